"""The entries API (admin token): read and change the FAQ's corpus over HTTP, as Meilisearch or Elasticsearch take
documents.

``GET /admin/entries`` (paged) and ``GET /admin/entries/<id>`` read the corpus as written, with its checksum (also
the ``ETag``) and whether the served index is built from it; ``PUT /admin/entries/<id>`` creates or replaces one
entry, ``DELETE /admin/entries/<id>`` removes one, ``POST /admin/entries`` imports many (a JSON Lines body: one entry
per line, each created or replaced); ``GET``/``PUT /admin/synonyms`` read and replace the header's synonyms. Every
change is checked as the build checks a corpus line, written whole or not at all (``corpus_writer.py``), then the
index is rebuilt and reloaded as after a review decision. The answer says whether the change is served yet
(``served``); ``?wait=<seconds>`` waits for it. ``If-Match: <checksum>`` refuses the change (409
``corpus_changed``) when the corpus is no longer the one read. Needs the query log (``FAQ_QUERY_LOG``), which holds
the build's state.
"""

from __future__ import annotations

import json
import re

from flask import Blueprint, jsonify, request

from ..errors import ErrorCode, InvalidRequest, UnsupportedMediaType
from .admin import require_admin_token
from .bodies import json_request, read_body
from .current import faq_service
from .openapi import ADMIN_SECURITY, ANY_OBJECT, REVIEW_ERRORS, describe, path_parameter
from .review import _number

bp = Blueprint("entries", __name__, url_prefix="/admin")
bp.before_request(require_admin_token)

#: A corpus checksum (SHA-256, hex), as ``checksum`` and the ``ETag`` give it.
CHECKSUM = re.compile(r"[0-9a-fA-F]{64}")
#: The longest a change waits to be served (``?wait=``).
MAX_WAIT_SECONDS = 300
#: Media types of an import's body (JSON Lines).
JSON_LINES = ("application/x-ndjson", "application/jsonl", "application/json-lines", "application/x-jsonlines")
CHANGE_ERRORS = REVIEW_ERRORS | {
    ErrorCode.INVALID_ENTRY, ErrorCode.CORPUS_CHANGED, ErrorCode.CORPUS_INVALID, ErrorCode.CORPUS_MISMATCH,
    ErrorCode.PRECONDITION_FAILED, ErrorCode.INVALID_IF_MATCH,
    ErrorCode.CORPUS_UNWRITABLE, ErrorCode.UNKNOWN_FIELD, ErrorCode.INVALID_TYPE, ErrorCode.OUT_OF_RANGE,
}  # fmt: skip
READ_ERRORS = frozenset({ErrorCode.CORPUS_INVALID, ErrorCode.CORPUS_UNWRITABLE, ErrorCode.UNKNOWN_FIELD,
                         ErrorCode.INVALID_TYPE, ErrorCode.OUT_OF_RANGE})  # fmt: skip
WAIT_PARAMETER = {
    "name": "wait",
    "in": "query",
    "required": False,
    "description": f"Seconds to wait for the change to be served (0 to {MAX_WAIT_SECONDS}; default 0: answer at once).",
    "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS},
}
IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": "The corpus checksum the change is made against (`checksum`, or the `ETag` of a GET): another "
    "one gets 409 `corpus_changed`.",
    "schema": {"type": "string"},
}
PAGE_PARAMETERS = [
    {"name": "offset", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0}},
    {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
]
CHANGED = {
    200: ("The change is served (`served: true`), or changed nothing.", ANY_OBJECT),
    202: ("Written; the index is being rebuilt (`rebuild`); `served` is false until it is reloaded.", ANY_OBJECT),
}
ENTRY_SCHEMA = {"type": "object", "required": ["question", "answer"], "additionalProperties": True,
                "properties": {"id": {"type": "string"}, "question": {"type": "string"},
                               "answer": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}},
                               "alt_questions": {"type": "array", "items": {"type": "string"}}}}  # fmt: skip


def _params(allowed: set[str]) -> None:
    unknown = sorted(set(request.args) - allowed)
    if unknown:
        raise InvalidRequest(
            f"unknown parameter '{unknown[0]}'; accepted: {', '.join(sorted(allowed)) or 'none'}",
            code=ErrorCode.UNKNOWN_FIELD,
            field=unknown[0],
        )


def _wait() -> float:
    _params({"wait"})
    return float(_number("wait", 0.0, 0.0, MAX_WAIT_SECONDS))


def _if_match() -> str | None:
    """The checksum of ``If-Match`` (quoted as the ``ETag`` or bare, a weak ``W/`` taken off), None when absent or
    ``*``; 400 ``invalid_if_match`` for anything else."""
    if "If-Match" not in request.headers:
        return None
    raw = request.headers["If-Match"].strip()
    if raw == "*":
        return None
    if raw.startswith("W/"):
        raw = raw[2:]
    raw = raw.strip('"')
    if not CHECKSUM.fullmatch(raw):
        raise InvalidRequest(
            "If-Match must be the corpus checksum (the ETag of GET /admin/entries: 64 hex digits) or *",
            code=ErrorCode.INVALID_IF_MATCH,
        )
    return raw.lower()


def _answer(out: dict):
    response = jsonify(out)
    response.status_code = 200 if out["served"] or out["rebuild"] is None else 202
    response.headers["ETag"] = f'"{out["checksum"]}"'
    return response


def _read(out: dict):
    response = jsonify(out)
    response.headers["ETag"] = f'"{out["checksum"]}"'
    return response


@bp.get("/entries")
@describe(operation_id="listEntries", summary="Les entrées du corpus, telles qu'écrites (par pages)",
          parameters=PAGE_PARAMETERS,
          responses={200: ("A page of entries, the corpus's `checksum` and whether it is `served`.", ANY_OBJECT)},
          errors=READ_ERRORS, security=ADMIN_SECURITY, admin=True)  # fmt: skip
def list_entries():
    """A page of the corpus's entries as written (every field), with its checksum (also the ``ETag``)."""
    _params({"offset", "limit"})
    offset = int(_number("offset", 0, 0, 10**9, integer=True))
    limit = int(_number("limit", 50, 1, 500, integer=True))
    return _read(faq_service().list_entries(offset, limit))


@bp.get("/entries/<faq_id>")
@describe(operation_id="getEntry", summary="Une entrée du corpus, telle qu'écrite",
          parameters=path_parameter("faq_id", "chorus-pro-1"),
          responses={200: ("The entry and the corpus's `checksum`.", ANY_OBJECT)},
          errors=READ_ERRORS | {ErrorCode.UNKNOWN_ENTRY}, security=ADMIN_SECURITY, admin=True)  # fmt: skip
def get_entry(faq_id: str):
    """One entry of the corpus as written."""
    _params(set())
    return _read(faq_service().get_entry(faq_id))


@bp.put("/entries/<faq_id>")
@describe(
    operation_id="putEntry",
    summary="Créer ou remplacer une entrée (puis reconstruire et recharger l'index)",
    description="The body is one corpus line (docs/corpus.md); its `id`, if given, must be the path's.",
    parameters=[*path_parameter("faq_id", "chorus-pro-6"), WAIT_PARAMETER, IF_MATCH],
    request=(ENTRY_SCHEMA, {"question": "Comment joindre le support ?", "answer": "Depuis votre compte…"}),
    responses=CHANGED,
    errors=CHANGE_ERRORS | {ErrorCode.ID_MISMATCH},
    security=ADMIN_SECURITY, body=True, admin=True,
)  # fmt: skip
def put_entry(faq_id: str):
    """Create or replace the entry ``faq_id``."""
    wait = _wait()
    body = json_request()
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be one entry: a JSON object", code=ErrorCode.INVALID_BODY)
    if "id" in body and body["id"] != faq_id:
        raise InvalidRequest(
            f"the body's id {body['id']!r} is not the path's {faq_id!r}", code=ErrorCode.ID_MISMATCH, field="id"
        )
    entry = {"id": faq_id, **{k: v for k, v in body.items() if k != "id"}}
    return _answer(faq_service().put_entries([entry], _if_match(), wait))


@bp.delete("/entries/<faq_id>")
@describe(
    operation_id="deleteEntry",
    summary="Supprimer une entrée (puis reconstruire et recharger l'index)",
    parameters=[*path_parameter("faq_id", "chorus-pro-5"), WAIT_PARAMETER, IF_MATCH],
    responses=CHANGED,
    errors=CHANGE_ERRORS | {ErrorCode.UNKNOWN_ENTRY, ErrorCode.LAST_ENTRY},
    security=ADMIN_SECURITY, admin=True,
)  # fmt: skip
def delete_entry(faq_id: str):
    """Remove the entry ``faq_id`` (never the corpus's last)."""
    return _answer(faq_service().delete_entry(faq_id, _if_match(), _wait()))


@bp.post("/entries")
@describe(
    operation_id="importEntries",
    summary="Importer des entrées (JSON Lines : une entrée par ligne, créée ou remplacée)",
    description="`Content-Type: application/x-ndjson`; every line is checked before anything is written, and the "
    "first bad one is named (`line N`). Within `FAQ_MAX_BODY_BYTES`: split a larger import.",
    parameters=[WAIT_PARAMETER, IF_MATCH],
    request=(("application/x-ndjson", {"type": "array", "items": ENTRY_SCHEMA,
                                        "description": "one entry (a JSON object) per line"}), None),
    responses=CHANGED,
    errors=CHANGE_ERRORS | {ErrorCode.INVALID_JSON},
    security=ADMIN_SECURITY, body=True, admin=True,
)  # fmt: skip
def import_entries():
    """Create or replace the entries of a JSON Lines body, all or none."""
    wait = _wait()
    if request.mimetype not in JSON_LINES:
        raise UnsupportedMediaType(f"send the entries as application/x-ndjson, not {request.mimetype or 'nothing'}")
    try:
        text = read_body().decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("the body is not valid UTF-8", code=ErrorCode.INVALID_JSON) from None
    entries, lines = [], []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line.lstrip("\ufeff"), parse_constant=_no_constant))
        except (ValueError, RecursionError) as exc:
            raise InvalidRequest(f"line {number}: not valid JSON ({exc})", code=ErrorCode.INVALID_JSON) from None
        if not isinstance(entries[-1], dict):
            raise InvalidRequest(f"line {number}: an entry is a JSON object", code=ErrorCode.INVALID_ENTRY)
        lines.append(f"line {number}")
    if not entries:
        raise InvalidRequest("the body holds no entry (one JSON object per line)", code=ErrorCode.INVALID_ENTRY)
    return _answer(faq_service().put_entries(entries, _if_match(), wait, where=lines))


def _no_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


@bp.get("/synonyms")
@describe(operation_id="getSynonyms", summary="Les synonymes de la FAQ (en-tête du corpus)",
          responses={200: ("`synonyms` ({equivalent, oneway}), the corpus's `checksum`.", ANY_OBJECT)},
          errors=READ_ERRORS, security=ADMIN_SECURITY, admin=True)  # fmt: skip
def get_synonyms():
    """The synonyms of the corpus's header (docs/corpus.md)."""
    _params(set())
    return _read(faq_service().get_synonyms())


@bp.put("/synonyms")
@describe(
    operation_id="putSynonyms",
    summary="Remplacer les synonymes de la FAQ (puis reconstruire et recharger l'index)",
    parameters=[WAIT_PARAMETER, IF_MATCH],
    request=(
        {"type": "object", "additionalProperties": False,
         "properties": {"equivalent": {"type": "array", "items": {"type": "array", "items": {"type": "string"}}},
                        "oneway": {"type": "object", "additionalProperties": {"type": "array",
                                                                              "items": {"type": "string"}}}}},
        {"equivalent": [["mail", "courriel"]], "oneway": {"mdp": ["mot de passe"]}},
    ),
    responses=CHANGED,
    errors=CHANGE_ERRORS | {ErrorCode.INVALID_SYNONYMS},
    security=ADMIN_SECURITY, body=True, admin=True,
)  # fmt: skip
def put_synonyms():
    """Replace the synonyms of the corpus's header (``{}``: none); the body of ``GET /admin/synonyms`` is accepted
    as it is (its ``synonyms``; the checksum and serving fields it carries are read-only and ignored)."""
    wait = _wait()
    body = json_request()
    if isinstance(body, dict) and "synonyms" in body and set(body) <= {"synonyms", *READ_ONLY_FIELDS}:
        body = body["synonyms"]
    return _answer(faq_service().set_synonyms(body, _if_match(), wait))


#: What ``GET /admin/synonyms`` answers besides ``synonyms`` (sent back, ignored).
READ_ONLY_FIELDS = {"checksum", "served_checksum", "served", "corpus", "index_built_from", "warning"}
