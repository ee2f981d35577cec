"""Request schemas (pydantic) and their translation into the service's stable error codes."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import InvalidRequest

MAX_TOP_K = 50


class SearchRequest(BaseModel):
    """Body of ``POST /search`` (and the parameters of ``GET /search``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    query: str = Field(description="The user's question, in their own words.",
                       examples=["notre admin est parti sans passer la main"])
    top_k: int = Field(5, ge=1, le=MAX_TOP_K, description="Number of FAQ entries to return.")
    min_score: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False,
                                    description="Answer threshold for this request: the calibrated score (0 to 1) "
                                                "the best entry must reach to count as an answer.")


_TYPE_ERRORS = {"string_type", "int_type", "float_type", "bool_type", "model_type", "dict_type",
                "int_from_float", "float_parsing", "int_parsing"}
_RANGE_ERRORS = {"greater_than_equal", "less_than_equal", "greater_than", "less_than", "finite_number"}


def _clean_text(text: str) -> str:
    """Replace lone surrogates (legal in JSON escapes, not in UTF-8) so that any string can be encoded."""
    return text.encode("utf-8", "replace").decode("utf-8") if any(0xD800 <= ord(c) < 0xE000 for c in text) \
        else text


def parse_search(data: Any, max_query_chars: int) -> SearchRequest:
    """Validate a decoded search request.

    Raises:
        InvalidRequest: with code ``invalid_body``, ``missing_query``, ``empty_query``, ``query_too_long``,
            ``invalid_type``, ``out_of_range`` or ``unknown_field`` (and ``field`` set when one is at fault).
    """
    if not isinstance(data, dict):
        raise InvalidRequest(f"the body must be a JSON object, got {type(data).__name__}", code="invalid_body")
    try:
        request = SearchRequest.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or None
        kind = err["type"]
        if kind == "missing" and field == "query":
            raise InvalidRequest("'query' is required", code="missing_query", field="query") from None
        if kind == "extra_forbidden":
            raise InvalidRequest(f"unknown field '{field}'; accepted: query, top_k, min_score",
                                 code="unknown_field", field=field) from None
        if kind in _RANGE_ERRORS:
            limits = {"top_k": f"an integer from 1 to {MAX_TOP_K}", "min_score": "a number from 0 to 1"}
            raise InvalidRequest(f"'{field}' must be {limits.get(field, 'in range')}", code="out_of_range",
                                 field=field) from None
        if kind in _TYPE_ERRORS:
            wanted = {"query": "a string", "top_k": "an integer", "min_score": "a number or null"}
            raise InvalidRequest(f"'{field}' must be {wanted.get(field, 'of another type')}",
                                 code="invalid_type", field=field) from None
        raise InvalidRequest(f"invalid '{field}': {err['msg']}", code="invalid_request", field=field) from None
    query = _clean_text(request.query).strip()
    if not query:
        raise InvalidRequest("'query' is empty", code="empty_query", field="query")
    if len(query) > max_query_chars:
        raise InvalidRequest(f"'query' is longer than {max_query_chars} characters", code="query_too_long",
                             field="query")
    return request.model_copy(update={"query": query})


def search_args_from_query_string(args) -> dict:
    """Turn ``GET /search?q=…&top_k=…&min_score=…`` parameters into the JSON body's types.

    Raises:
        InvalidRequest: a parameter is not a number where one is expected, or is unknown.
    """
    data: dict[str, Any] = {}
    for key in args:
        if key not in ("q", "query", "top_k", "min_score"):
            raise InvalidRequest(f"unknown parameter '{key}'; accepted: q, top_k, min_score",
                                 code="unknown_field", field=key)
    if "q" in args or "query" in args:
        data["query"] = args.get("q", args.get("query"))
    if "top_k" in args:
        raw = args["top_k"].strip()
        if not raw.lstrip("+-").isdigit():
            raise InvalidRequest("'top_k' must be an integer", code="invalid_type", field="top_k")
        data["top_k"] = int(raw)
    if "min_score" in args:
        try:
            value = float(args["min_score"])
        except ValueError:
            raise InvalidRequest("'min_score' must be a number", code="invalid_type", field="min_score") from None
        if not math.isfinite(value):
            raise InvalidRequest("'min_score' must be a number from 0 to 1", code="out_of_range",
                                 field="min_score")
        data["min_score"] = value
    return data
