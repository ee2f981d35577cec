"""The FAQ owner's routes (admin token): the review queue, its actions, the FAQ's gaps, and the review page.

``GET /admin/review`` lists the groups; ``POST /admin/review/actions`` applies a decision to queries (then the
index is rebuilt in a child process and reloaded); ``GET /admin/review/actions`` lists the decisions and
``POST /admin/review/actions/<id>/revert`` cancels one; ``POST /admin/review/rebuild`` builds again now for the
decisions the current build lacks (after a failed build); ``GET /admin/gaps`` ranks what the FAQ does not answer.
All of it needs the query log (``FAQ_QUERY_LOG``). The page ``GET /review`` is static (it asks for the token and
calls these routes).
"""

from __future__ import annotations

import math
import sqlite3

from flask import Blueprint, current_app, jsonify, request

from ..corpus import CorpusError
from ..errors import InvalidRequest, QueryLogUnavailable, ServiceError
from ..learning import review
from . import observability
from .admin import require_admin_token
from .bodies import json_request
from .routes import current_engine, query_log
from .schemas import RevertRequest, ReviewActionRequest, parse_body

bp = Blueprint("review", __name__, url_prefix="/admin")
bp.before_request(require_admin_token)
page = Blueprint("review_page", __name__)

MAX_DAYS, MAX_LIMIT, MAX_PAGE = 3650, 500, 10_000


def _source() -> review.Source:
    querylog = query_log("the review queue needs the query log", code="query_log_disabled")
    config = current_app.config
    return review.Source(str(querylog.path), str(config["FAQ_CORPUS"]), current_engine(), str(config["FAQ_INDEX"]))


def _number(name: str, default: float, low: float, high: float, integer: bool = False) -> float:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise InvalidRequest(f"'{name}' must be a number", code="invalid_type", field=name) from None
    if not (math.isfinite(value) and low <= value <= high):
        raise InvalidRequest(f"'{name}' must be from {low:g} to {high:g}", code="out_of_range", field=name)
    return value


def _reading(call):
    """Run work on the log or the reviewed file; a database or file error becomes a clear error, never a bare 500."""
    try:
        return call()
    except sqlite3.Error as exc:
        raise QueryLogUnavailable(f"the query log cannot be read: {exc}") from None
    except CorpusError as exc:
        raise ServiceError(f"the reviewed file is damaged: {exc}", code="reviewed_file_invalid") from None
    except OSError as exc:  # a read-only corpus directory, a full disk
        raise ServiceError(
            f"the reviewed file cannot be written next to the corpus: {exc.strerror or exc}",
            code="reviewed_file_unwritable",
        ) from None


def _window() -> tuple[float, int, int]:
    unknown = sorted(set(request.args) - {"days", "limit", "page"})
    if unknown:
        raise InvalidRequest(f"unknown parameter '{unknown[0]}'; accepted: days, limit, page", code="unknown_field",
                             field=unknown[0])  # fmt: skip
    days_default = float(current_app.config["FAQ_QUERY_LOG_DAYS"])
    return (
        _number("days", days_default, 0.001, MAX_DAYS),
        int(_number("limit", 50, 1, MAX_LIMIT, integer=True)),
        int(_number("page", 1, 1, MAX_PAGE, integer=True)),
    )


@bp.get("/review")
def review_queue():
    """The groups of unanswered or unhelpful queries not yet reviewed, most flagged first, with the rebuild state."""
    source = _source()
    days, limit, page = _window()
    out = _reading(lambda: review.review_queue(source, days, limit, page))
    out["rebuild"] = _reading(current_app.extensions["faq_rebuilder"].status)
    return jsonify(out)


@bp.get("/gaps")
def gaps():
    """The FAQ's missing questions: groups of queries it failed, the most failed first, then the most asked."""
    source = _source()
    days, limit, page = _window()
    return jsonify(_reading(lambda: review.gaps(source, days, limit, page)))


@bp.post("/review/rebuild")
def rebuild_now():
    """Build again now for the decisions the current build lacks (the review page's retry button): 202 with the
    build's state; 200 with the last state when the current build has them all (nothing is built)."""
    _source()
    rebuilder = current_app.extensions["faq_rebuilder"]
    state = _reading(rebuilder.retry)
    if state is None:
        return jsonify({"rebuild": _reading(rebuilder.status), "started": False}), 200
    return jsonify({"rebuild": state, "started": True}), 202


@bp.post("/review/actions")
def review_action():
    """Apply a decision to queries, append it to the reviewed file, and rebuild and reload the index."""
    source = _source()
    body = parse_body(ReviewActionRequest, json_request())
    if body.action != "dismiss" and not body.faq_id:
        raise InvalidRequest(f"'{body.action}' needs 'faq_id'", code="missing_field", field="faq_id")
    days = float(current_app.config["FAQ_QUERY_LOG_DAYS"])
    action = _reading(
        lambda: review.apply(
            source,
            body.action,
            list(dict.fromkeys(body.query_keys)),
            body.index_id,
            body.by,
            faq_id=body.faq_id,
            note=body.note,
            days=days,
        )
    )
    observability.REVIEW_ACTIONS.labels(body.action).inc()
    rebuild = None if body.action == "dismiss" else current_app.extensions["faq_rebuilder"].request(action.id)
    response = jsonify({"action": action.to_dict(), "rebuild": rebuild})
    response.status_code = 201
    return response


@bp.get("/review/actions")
def review_actions():
    """Every decision, newest first, with ``reverted_by`` when cancelled."""
    source = _source()
    return jsonify({"actions": _reading(lambda: review.list_actions(source))})


@bp.post("/review/actions/<action_id>/revert")
def revert_action(action_id: str):
    """Cancel a decision (appended as a revert), and rebuild and reload the index."""
    source = _source()
    body = parse_body(RevertRequest, json_request() if request.content_length else {})
    record, target = _reading(lambda: review.revert(source, action_id, body.by))
    observability.REVIEW_ACTIONS.labels("revert").inc()
    rebuild = current_app.extensions["faq_rebuilder"].request(record.id) if target.action != "dismiss" else None
    response = jsonify({"action": record.to_dict(), "rebuild": rebuild})
    response.status_code = 201
    return response


@page.get("/review")
def review_page():
    """The review page (French): asks for the admin token, then lists groups and applies decisions."""
    return current_app.send_static_file("review.html")
