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

from flask import Blueprint, current_app, jsonify, request

from ..core.models import RevertRequest, ReviewActionRequest, parse_body
from ..errors import ErrorCode, InvalidRequest
from .admin import require_admin_token
from .bodies import json_request
from .current import faq_service, known_faq
from .openapi import ADMIN_SECURITY, HTML, REVIEW_ERRORS, WINDOW_PARAMETERS, describe, path_parameter

#: The review routes' own refusals.
WINDOW_ERRORS = frozenset({ErrorCode.UNKNOWN_FIELD, ErrorCode.INVALID_TYPE, ErrorCode.OUT_OF_RANGE})
DECISION_ERRORS = frozenset(
    {ErrorCode.MISSING_FIELD, ErrorCode.UNKNOWN_FIELD, ErrorCode.INVALID_TYPE, ErrorCode.INVALID_REQUEST,
     ErrorCode.OUT_OF_RANGE, ErrorCode.INVALID_REVIEW_ACTION, ErrorCode.REVIEWED_FILE_UNWRITABLE}
)  # fmt: skip

bp = Blueprint("review", __name__, url_prefix="/admin")
bp.before_request(require_admin_token)
page = Blueprint("review_page", __name__)

MAX_DAYS, MAX_LIMIT, MAX_PAGE = 3650, 500, 10_000


def _number(name: str, default: float | None, low: float, high: float, integer: bool = False) -> float | None:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise InvalidRequest(f"'{name}' must be a number", code=ErrorCode.INVALID_TYPE, field=name) from None
    if not (math.isfinite(value) and low <= value <= high):
        raise InvalidRequest(f"'{name}' must be from {low:g} to {high:g}", code=ErrorCode.OUT_OF_RANGE, field=name)
    return value


def _window() -> dict:
    unknown = sorted(set(request.args) - {"days", "limit", "page"})
    if unknown:
        raise InvalidRequest(
            f"unknown parameter '{unknown[0]}'; accepted: days, limit, page",
            code=ErrorCode.UNKNOWN_FIELD,
            field=unknown[0],
        )
    return {
        "days": _number("days", None, 0.001, MAX_DAYS),
        "limit": int(_number("limit", 50, 1, MAX_LIMIT, integer=True)),
        "page": int(_number("page", 1, 1, MAX_PAGE, integer=True)),
    }


@bp.get("/review")
@describe(operation_id="reviewQueue",
          summary="Questions sans réponse ou jugées inutiles, regroupées par sens, à revoir",
          parameters=WINDOW_PARAMETERS,
          responses={200: ("The groups to review, most flagged first.", "ReviewQueueResponse")},
          errors=REVIEW_ERRORS | WINDOW_ERRORS, security=ADMIN_SECURITY, admin=True)  # fmt: skip
def review_queue():
    """The groups of unanswered or unhelpful queries not yet reviewed, most flagged first, with the rebuild state."""
    service = faq_service()
    service.needs_query_log("the review queue needs the query log", code=ErrorCode.QUERY_LOG_DISABLED)
    return jsonify(service.review_queue(**_window()))


@bp.get("/gaps")
@describe(operation_id="faqGaps", summary="Les questions que la FAQ ne couvre pas, les plus souvent manquées d'abord",
          parameters=WINDOW_PARAMETERS, responses={200: ("The groups of unanswered queries, most failed first.",
                                                         "GapsResponse")},
          errors=REVIEW_ERRORS | WINDOW_ERRORS, security=ADMIN_SECURITY, admin=True)  # fmt: skip
def gaps():
    """The FAQ's missing questions: groups of queries it failed, the most failed first, then the most asked."""
    service = faq_service()
    service.needs_query_log("the review queue needs the query log", code=ErrorCode.QUERY_LOG_DISABLED)
    return jsonify(service.gaps(**_window()))


@bp.post("/review/rebuild")
@describe(operation_id="reviewRebuild",
          summary="Reconstruire l'index maintenant pour les décisions qui lui manquent (après un échec)",
          responses={200: ("Nothing to build: the current build has every decision.", "RebuildResponse"),
                     202: ("The rebuild started, or queued behind the one running.", "RebuildResponse")},
          errors=REVIEW_ERRORS, security=ADMIN_SECURITY, admin=True)  # fmt: skip
def rebuild_now():
    """Build again now for the decisions the current build lacks (the review page's retry button): 202 with the
    build's state; 200 with the last state when the current build has them all (nothing is built)."""
    out = faq_service().rebuild_now()
    return jsonify(out), 202 if out["started"] else 200


@bp.post("/review/actions")
@describe(
    operation_id="reviewAction",
    summary="Rattacher des questions à une entrée, les marquer sans réponse, ou les écarter",
    description="Appended to `<corpus>.reviewed.jsonl`; the index is then rebuilt and reloaded (not for `dismiss`).",
    request=("ReviewActionRequest", {"action": "attach", "faq_id": "chorus-pro-1", "query_keys": ["q3878a989f14d14e"],
                                     "index_id": "20261129T081827807984Z-6ec550d7", "by": "marie"}),
    responses={201: ("The action as recorded and the rebuild's state.", "ReviewActionResponse")},
    errors=REVIEW_ERRORS | DECISION_ERRORS | {ErrorCode.STALE_REVIEW, ErrorCode.ALREADY_REVIEWED,
                                              ErrorCode.REVIEW_CONFLICT, ErrorCode.CORPUS_MISMATCH,
                                              ErrorCode.UNKNOWN_ENTRY, ErrorCode.UNKNOWN_QUERY},
    security=ADMIN_SECURITY, body=True, admin=True,
)  # fmt: skip
def review_action():
    """Apply a decision to queries, append it to the reviewed file, and rebuild and reload the index."""
    service = faq_service()
    service.needs_query_log("the review queue needs the query log", code=ErrorCode.QUERY_LOG_DISABLED)
    return jsonify(service.decide(parse_body(ReviewActionRequest, json_request()))), 201


@bp.get("/review/actions")
@describe(operation_id="reviewActions", summary="Les décisions prises, les plus récentes d'abord",
          responses={200: ("Every decision, newest first, with `reverted_by` when cancelled.",
                           "ReviewActionsResponse")},
          errors=REVIEW_ERRORS, security=ADMIN_SECURITY, admin=True)  # fmt: skip
def review_actions():
    """Every decision, newest first, with ``reverted_by`` when cancelled."""
    return jsonify(faq_service().actions())


@bp.post("/review/actions/<action_id>/revert")
@describe(operation_id="revertReviewAction", summary="Annuler une décision (et reconstruire l'index)",
          parameters=path_parameter("action_id"), request=("RevertRequest", {"by": "marie"}), request_required=False,
          responses={201: ("The revert as recorded and the rebuild's state.", "ReviewActionResponse")},
          errors=REVIEW_ERRORS | DECISION_ERRORS | {ErrorCode.UNKNOWN_ACTION, ErrorCode.ALREADY_REVERTED},
          security=ADMIN_SECURITY, body=True, admin=True)  # fmt: skip
def revert_action(action_id: str):
    """Cancel a decision (appended as a revert), and rebuild and reload the index."""
    service = faq_service()
    service.needs_query_log("the review queue needs the query log", code=ErrorCode.QUERY_LOG_DISABLED)
    body = parse_body(RevertRequest, json_request() if request.content_length else {})
    return jsonify(service.revert(action_id, body.by)), 201


@page.get("/review")
@describe(operation_id="reviewPage",
          summary="Page de revue pour le responsable de la FAQ (demande le jeton d'administration)",
          responses={200: ("HTML page (French); it calls the /admin/review routes with the token.", HTML)},
          http_statuses=frozenset({416}))  # fmt: skip
def review_page():
    """The review page (French): asks for the admin token, then lists groups and applies decisions."""
    known_faq()  # /faqs/<name>/review of a FAQ this service does not serve is a 404
    return current_app.send_static_file("review.html")
