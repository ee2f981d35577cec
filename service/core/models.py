"""The requests and responses of the service's use cases (pydantic), shared by every way in: the HTTP routes and
the OpenAPI document built from them, and the MCP server. Request models come with their parsing into the
service's stable error codes; response models document what the use cases return (tests validate real responses
against them)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ErrorCode, InvalidRequest

MAX_TOP_K = 50
#: A name someone can read: something visible, no control characters (what the reviewed file's reader accepts).
VISIBLE = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f\u200b-\u200d\u2060\ufeff][^\x00-\x1f\x7f-\x9f]*$"


class FaqSearchRequest(BaseModel):
    """Body of ``POST /faqs/<name>/search``: a search in that FAQ."""

    model_config = ConfigDict(extra="forbid", strict=True)

    query: str = Field(
        min_length=1,
        pattern=r"\S",
        description="The user's question, in their own words.",
        examples=["notre admin est parti sans passer la main"],
    )
    top_k: int = Field(5, ge=1, le=MAX_TOP_K, description="Number of FAQ entries to return.")
    min_score: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="Answer threshold for this request: the calibrated score (0 to 1) "
        "the best entry must reach to count as an answer.",
    )
    filter: dict[str, Any] | None = Field(
        None,
        description='Return only the entries that match: `{"tags": ["factures"]}` (any of these tags), '
        '`{"tags": {"all": ["a", "b"]}}`, `{"audience": "acheteur"}` or `{"audience": ["a", "b"]}` (a scalar field '
        "the entries declare); several fields: each must match. Applied before ranking; the answer decision is made "
        "among the matching entries.",
        examples=[{"tags": ["compte"]}],
    )


class SearchRequest(FaqSearchRequest):
    """Body of ``POST /search`` (and the parameters of ``GET /search``): a search in the default FAQ, or across
    FAQs."""

    faqs: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        None,
        min_length=1,
        max_length=64,
        description='Search these FAQs of the service (their names; ["*"]: all of them) and get one list, each result '
        "naming its FAQ in `faq`. Only on the routes without a FAQ name (`/search`, `/search/batch`).",
        examples=[["*"]],
    )


#: Most queries in one ``POST /search/batch``.
MAX_BATCH = 64


class BatchRequest(BaseModel):
    """Body of ``POST /search/batch``: several searches, answered in one request (queries embedded together)."""

    model_config = ConfigDict(extra="forbid")

    queries: list[Any] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description="Up to 64 searches, each a search request object (see SearchRequest) or just the query "
        "string. Each is validated on its own: an invalid one gets its error in its slot of the "
        "response and does not fail the others.",
        examples=[["pas reçu le mail d'activation", {"query": "notre admin est parti", "top_k": 3}]],
    )


_TYPE_ERRORS = {
    "string_type",
    "int_type",
    "float_type",
    "bool_type",
    "model_type",
    "dict_type",
    "int_from_float",
    "float_parsing",
    "int_parsing",
    "list_type",
}
_RANGE_ERRORS = {"greater_than_equal", "less_than_equal", "greater_than", "less_than", "finite_number", "too_long",
                 "too_short", "string_too_long"}  # fmt: skip


def _clean_text(text: str) -> str:
    """Replace lone surrogates (legal in JSON escapes, not in UTF-8) so that any string can be encoded."""
    return text.encode("utf-8", "replace").decode("utf-8") if any(0xD800 <= ord(c) < 0xE000 for c in text) else text


def parse_search(data: Any, max_query_chars: int) -> SearchRequest:
    """Validate a decoded search request.

    Raises:
        InvalidRequest: with code ``invalid_body``, ``missing_query``, ``empty_query``, ``query_too_long``,
            ``invalid_type``, ``out_of_range`` or ``unknown_field`` (and ``field`` set when one is at fault).
    """
    if not isinstance(data, dict):
        raise InvalidRequest(f"the body must be a JSON object, got {type(data).__name__}", code=ErrorCode.INVALID_BODY)
    # Keys too may hold lone surrogates (legal in JSON escapes): cleaned, so that an error can name them.
    data = {_clean_text(k) if isinstance(k, str) else k: v for k, v in data.items()}
    if isinstance(data.get("query"), str):
        data["query"] = _clean_text(data["query"])
    top_k = data.get("top_k")
    if isinstance(top_k, float) and top_k.is_integer():
        data["top_k"] = int(top_k)  # JSON Schema counts 5.0 as an integer, and so do we
    try:
        request = SearchRequest.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or None
        kind = err["type"]
        if kind == "missing" and field == "query":
            raise InvalidRequest("'query' is required", code=ErrorCode.MISSING_QUERY, field="query") from None
        if field and field.startswith("faqs."):  # one of its names
            field = "faqs"
            if kind == "string_too_short":
                raise InvalidRequest("a name in 'faqs' is empty", code=ErrorCode.INVALID_REQUEST, field=field) from None
            if kind == "string_too_long":
                raise InvalidRequest(
                    "a name in 'faqs' is longer than 200 characters", code=ErrorCode.OUT_OF_RANGE, field=field
                ) from None
        if field == "query" and kind in ("string_too_short", "string_pattern_mismatch"):
            raise InvalidRequest("'query' is empty", code=ErrorCode.EMPTY_QUERY, field="query") from None
        if kind == "extra_forbidden":
            raise InvalidRequest(
                f"unknown field '{field}'; accepted: query, top_k, min_score, filter, faqs",
                code=ErrorCode.UNKNOWN_FIELD,
                field=field,
            ) from None
        if kind in _RANGE_ERRORS:
            limits = {"top_k": f"an integer from 1 to {MAX_TOP_K}", "min_score": "a number from 0 to 1",
                      "faqs": "a list of 1 to 64 FAQ names"}  # fmt: skip
            raise InvalidRequest(
                f"'{field}' must be {limits.get(field, 'in range')}", code=ErrorCode.OUT_OF_RANGE, field=field
            ) from None
        if kind in _TYPE_ERRORS:
            wanted = {"query": "a string", "top_k": "an integer", "min_score": "a number or null",
                      "faqs": "a list of FAQ names", "filter": "an object of fields"}  # fmt: skip
            raise InvalidRequest(
                f"'{field}' must be {wanted.get(field, 'of another type')}", code=ErrorCode.INVALID_TYPE, field=field
            ) from None
        raise InvalidRequest(f"invalid '{field}': {err['msg']}", code=ErrorCode.INVALID_REQUEST, field=field) from None
    if len(request.query) > max_query_chars:
        raise InvalidRequest(
            f"'query' is longer than {max_query_chars} characters", code=ErrorCode.QUERY_TOO_LONG, field="query"
        )
    query = request.query.strip()
    if not query:  # only characters Python strips but the pattern does not see as spaces (U+001C–U+001F)
        raise InvalidRequest("'query' is empty", code=ErrorCode.EMPTY_QUERY, field="query")
    return request.model_copy(update={"query": query})


def parse_batch(data: Any, max_query_chars: int) -> list[SearchRequest | InvalidRequest]:
    """Validate a batch body; each query is validated on its own, so one bad query does not fail the others.

    Returns:
        For each query, in order, its validated request or the error it gets.
    Raises:
        InvalidRequest: the body itself is wrong: not an object (``invalid_body``), an unknown field
            (``unknown_field``), no ``queries`` (``missing_queries``), not a list (``invalid_type``), or
            empty or longer than ``MAX_BATCH`` (``out_of_range``).
    """
    if not isinstance(data, dict):
        raise InvalidRequest(f"the body must be a JSON object, got {type(data).__name__}", code=ErrorCode.INVALID_BODY)
    for key in data:
        if key != "queries":
            key = _clean_text(key)
            raise InvalidRequest(f"unknown field '{key}'; accepted: queries", code=ErrorCode.UNKNOWN_FIELD, field=key)
    if "queries" not in data:
        raise InvalidRequest("'queries' is required", code=ErrorCode.MISSING_QUERIES, field="queries")
    queries = data["queries"]
    if not isinstance(queries, list):
        raise InvalidRequest("'queries' must be a list", code=ErrorCode.INVALID_TYPE, field="queries")
    if not 1 <= len(queries) <= MAX_BATCH:
        raise InvalidRequest(
            f"'queries' must hold 1 to {MAX_BATCH} queries, not {len(queries)}",
            code=ErrorCode.OUT_OF_RANGE,
            field="queries",
        )
    out: list[SearchRequest | InvalidRequest] = []
    for item in queries:
        try:
            out.append(parse_search({"query": item} if isinstance(item, str) else item, max_query_chars))
        except InvalidRequest as exc:
            out.append(exc)
    return out


class FeedbackRequest(BaseModel):
    """Body of ``POST /feedback``: whether an entry a search returned helped the user."""

    model_config = ConfigDict(extra="forbid", strict=True)

    request_id: str = Field(
        pattern=r"^[A-Za-z0-9._:-]{1,128}$",
        description="The search's request id (its `request_id` field, or its `X-Request-ID` header).",
    )
    faq_id: str = Field(min_length=1, max_length=128, description="The entry the user judged.")
    helpful: bool = Field(description="True: the entry answered the question; false: it did not.")


#: Query keys one review action may name at most.
MAX_ACTION_QUERIES = 500


class ReviewActionRequest(BaseModel):
    """Body of ``POST /admin/review/actions``: the FAQ owner's decision on queries of the review queue."""

    model_config = ConfigDict(extra="forbid", strict=True)

    action: Literal["attach", "not_answered", "dismiss"] = Field(
        description="`attach`: the queries become alternative questions of `faq_id`; `not_answered`: known "
        "non-answers of `faq_id` (a query like them is refused); `dismiss`: out of the queue, nothing changes."
    )
    query_keys: list[Annotated[str, Field(pattern=r"^q[0-9a-f]{15}$")]] = Field(
        min_length=1, max_length=MAX_ACTION_QUERIES, description="Keys of the queries (a group's `query_keys`)."
    )
    index_id: str = Field(
        min_length=1, max_length=128, description="The `index_id` of the listing: refused (409) if the index changed."
    )
    faq_id: str | None = Field(None, max_length=128, description="The entry (not for `dismiss`).")
    by: str = Field(
        "admin", min_length=1, max_length=100, pattern=VISIBLE, description="Who decides (kept with the action)."
    )
    note: str | None = Field(None, max_length=500, description="Why, for the record.")


class RevertRequest(BaseModel):
    """Body of ``POST /admin/review/actions/<id>/revert`` (optional)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    by: str = Field("admin", min_length=1, max_length=100, pattern=VISIBLE, description="Who reverts.")


def parse_body(model: type[BaseModel], data: Any) -> BaseModel:
    """Validate a decoded JSON body against ``model``, with the service's error codes.

    Raises:
        InvalidRequest: ``invalid_body``, ``missing_field``, ``unknown_field``, ``invalid_type``, ``out_of_range``
            or ``invalid_request``, with ``field`` set.
    """
    if not isinstance(data, dict):
        raise InvalidRequest(f"the body must be a JSON object, got {type(data).__name__}", code=ErrorCode.INVALID_BODY)
    data = {_clean_text(k) if isinstance(k, str) else k: v for k, v in data.items()}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or None
        kind = err["type"]
        accepted = ", ".join(model.model_fields)
        if kind == "missing":
            raise InvalidRequest(f"'{field}' is required", code=ErrorCode.MISSING_FIELD, field=field) from None
        if kind == "extra_forbidden":
            raise InvalidRequest(
                f"unknown field '{field}'; accepted: {accepted}", code=ErrorCode.UNKNOWN_FIELD, field=field
            ) from None
        if kind == "literal_error":
            raise InvalidRequest(f"'{field}': {err['msg']}", code=ErrorCode.INVALID_REQUEST, field=field) from None
        if kind == "string_pattern_mismatch" and field == "by":
            raise InvalidRequest(
                "'by' must hold something visible, without control characters",
                code=ErrorCode.INVALID_REQUEST,
                field=field,
            ) from None
        if kind in _TYPE_ERRORS or kind in ("list_type", "string_type"):
            raise InvalidRequest(f"'{field}': {err['msg']}", code=ErrorCode.INVALID_TYPE, field=field) from None
        if kind in _RANGE_ERRORS or kind in ("too_short", "too_long", "string_too_short", "string_too_long"):
            raise InvalidRequest(f"'{field}': {err['msg']}", code=ErrorCode.OUT_OF_RANGE, field=field) from None
        raise InvalidRequest(f"invalid '{field}': {err['msg']}", code=ErrorCode.INVALID_REQUEST, field=field) from None


# ---- Response shapes: they document the API (``openapi.py``); tests validate real responses against them. ----


class Match(BaseModel):
    """Why an entry matched."""

    by: Literal["question", "alt_question", "passage"] = Field(
        description="The representation that matched best: the official question, an alternative question, or "
        "an answer passage."
    )
    matched_question: str = Field(description="The entry's question (official or alternative) closest to the query.")
    question_similarity: float = Field(description="Cosine between the query and that question.")
    passage_similarity: float = Field(description="Cosine between the query and the best passage.")
    lexical_score: float = Field(ge=0, le=1, description="BM25 of the entry, normalised per query to 0..1.")
    terms: list[str] = Field(description="The query's words (lower case, accents removed) found in the entry.")


class Highlight(BaseModel):
    """A part of a result's text to highlight."""

    start: int = Field(ge=0)
    end: int = Field(ge=0)
    kind: Literal["sentence", "term"]
    term: str | None = Field(None, description="`kind: term`: the query's word it matches.")


class Link(BaseModel):
    """A link of an entry."""

    label: str
    url: str = Field(description="An http or https URL.")


class SearchResult(BaseModel):
    """One FAQ entry, shown by its best passage."""

    rank: int = Field(ge=1)
    score: float = Field(ge=0, le=1, description="Calibrated: estimated probability that this entry answers.")
    faq_id: str
    passage_id: str
    question: str
    text: str = Field(description="The passage's text.")
    section: str | None = Field(description="The sub-heading the passage sits under, if any.")
    match: Match
    links: list[Link] = Field(
        default_factory=list,
        description="Where to go further: the entry's `links`, then its answer's markdown links (http and https only).",
    )
    highlights: list[Highlight] = Field(
        default_factory=list,
        description="What to show of `text`: the sentence that best answers (`kind: sentence`, at most one, first) "
        "and the query's words in it (`kind: term`), as character offsets: `text[start:end]`.",
    )
    faq: str | None = Field(None, description="The FAQ the entry is from (a search across FAQs only).")


class IndexInfo(BaseModel):
    """Which index answered."""

    id: str
    model: str


class Reason(BaseModel):
    """Why the first result is not an answer."""

    code: Literal["no_close_entry", "ambiguous", "not_covered", "known_non_answer", "too_vague"] = Field(
        description="Stable code: `no_close_entry` (no entry is close enough: off topic, or a question the FAQ "
        "never addresses), `ambiguous` (two entries are too close to choose), `not_covered` (the nearest entry does "
        "not cover the question's key words, listed in `terms`), `known_non_answer` (the FAQ owner marked a question "
        "like this one as not answered by the nearest entry: its `not_questions`), `too_vague` (every word of the "
        "question is in every entry: it names only what they share, such as the product)."
    )
    message: str = Field(description="The same in English, for logs and developers.")
    terms: list[str] = Field(
        description="The query's content words (lower case, accents removed) that the nearest entry lacks; for "
        "`not_covered`, what the FAQ does not talk about."
    )
    confidence: float | None = Field(
        ge=0,
        le=1,
        description="The answer check's estimated probability that the first entry answers (None when the check "
        "did not run: the threshold, the margin, a known non-answer or a too vague question refused first).",
    )


class SearchResponse(BaseModel):
    """Answer to a search."""

    query: str = Field(description="The query as searched (trimmed).")
    answered: bool = Field(
        description="True when the first result answers the question and can be shown as the answer. When false, "
        "do not present a result as the answer: show them as suggestions, or hand over to a human (`reason` says "
        "why)."
    )
    reason: Reason | None = Field(description="Why `answered` is false; null when it is true.")
    min_score: float = Field(
        description="The score threshold of this search (`answered` also needs the lead over the second entry and "
        "the answer check)."
    )
    results: list[SearchResult]
    index: IndexInfo
    took_ms: float
    faq: str | None = Field(
        None, description="A search across FAQs: the FAQ whose first result leads (`answered` and `reason` are its)."
    )
    faqs: list[str] | None = Field(None, description="A search across FAQs: the FAQs searched.")
    unavailable: list[str] | None = Field(
        None, description="A search across FAQs: the FAQs named that have no index loaded (left out)."
    )
    request_id: str | None = Field(
        None, description="This search's request id: send it with `POST /feedback` to say whether an entry helped."
    )


class FeedbackResponse(BaseModel):
    """Feedback recorded."""

    status: Literal["recorded"]
    request_id: str
    faq_id: str
    helpful: bool


class ErrorBody(BaseModel):
    """What went wrong."""

    status: int
    code: str = Field(description="Stable code to switch on, e.g. `empty_query`, `out_of_range`.")
    message: str
    field: str | None = Field(None, description="The parameter at fault, when there is one.")


class ErrorResponse(BaseModel):
    """The one error shape."""

    error: ErrorBody


class BatchResponse(BaseModel):
    """Answer to a batch: one item per query, in order."""

    results: list[SearchResponse | ErrorResponse]
    took_ms: float


class HealthResponse(BaseModel):
    """Liveness, and a summary of the loaded index's manifest."""

    status: Literal["ok"]
    index: dict[str, Any]
    reload: dict[str, Any] = Field(
        description="Reloads of this worker: how many succeeded, and the last one "
        "(with the reason when a new build was refused)."
    )
    query_log: dict[str, Any] = Field(description="The query log's state (docs/learning.md).")
    rate_limit: dict[str, Any] = Field(
        description="The rate limit: `enabled`, and when it is, the `limit`, the `storage` it is counted in "
        "(without credentials) and its `state`: `memory` (per worker), `shared` (the store answers) or "
        "`fallback_memory` (the shared store is unreachable: each worker counts alone until it answers again)."
    )
    faqs: dict[str, dict[str, Any]] = Field(
        description="Every FAQ of the service by name: `ready`, its `index_id`, and its last reload (a refused build "
        "is shown here, the FAQ still serving the previous one); `/faqs/<name>/health` has the whole of one FAQ's."
    )


class FaqSummary(BaseModel):
    """One FAQ of the service (``GET /faqs``)."""

    name: str = Field(description="Its name: its routes are /faqs/<name>/search, /faqs/<name>/faq/<id>, …")
    default: bool = Field(description="The FAQ of the routes without a name (/search, /faq/<id>, …).")
    ready: bool = Field(description="An index is loaded.")
    faq: dict[str, Any] | None = Field(None, description="Its identity from the corpus header: name, language, "
                                       "what it covers, its support contact.")  # fmt: skip
    entries: int | None = Field(None, description="Entries of the index served.")
    index_id: str | None = None
    model: str | None = None
    error: dict[str, Any] | None = Field(None, description="Why it is not ready.")


class FaqsResponse(BaseModel):
    """The FAQs of the service."""

    default: str
    faqs: list[FaqSummary]


class PassageOut(BaseModel):
    """An answer passage."""

    passage_id: str
    faq_id: str
    question: str
    section: str | None
    text: str


class FaqEntryResponse(BaseModel):
    """A whole FAQ entry as in the corpus (extra corpus fields are kept), with its passages."""

    model_config = ConfigDict(extra="allow")

    id: str
    question: str
    answer: str
    source: str | None = None
    tags: list[str]
    alt_questions: list[str] = []
    passages: list[PassageOut]


# ---- The review queue's responses (``/admin/review``, ``/admin/gaps``; docs/learning.md) ----


class ReviewWording(BaseModel):
    """One distinct query of a group (redacted), by its key."""

    key: str
    text: str
    asked: int


class ReviewExample(ReviewWording):
    """One of a group's most asked wordings, with how often it went unanswered or was found unhelpful."""

    unanswered: int
    not_helpful: int


class SuggestedEntry(BaseModel):
    """An entry near a group's meaning."""

    faq_id: str
    question: str
    score: float


class ReviewGroup(BaseModel):
    """Queries of one meaning, with what happened to them and the entries nearest them."""

    id: str
    queries: int = Field(description="Distinct wordings.")
    asked: int
    unanswered: int
    not_helpful: int
    first_seen: str
    last_seen: str
    examples: list[ReviewExample] = Field(description="The most asked wordings (at most 5).")
    query_keys: list[str] = Field(description="Every wording's key: send them to decide for the whole group.")
    wordings: list[ReviewWording] = Field(description="Every wording an action on the group decides.")
    reasons: dict[str, int] = Field(description="Refusal codes, with how often.")
    shown: dict[str, int] = Field(description="The entries users were given first, with how often.")
    not_helpful_entries: dict[str, int]
    suggested: list[SuggestedEntry] = Field(description="The entries nearest the group's meaning.")


class EntryRef(BaseModel):
    """An entry of the FAQ, by id and question."""

    faq_id: str
    question: str


class QueuePage(BaseModel):
    """Which page of the flagged queries a listing is (500 queries a page, the most flagged first)."""

    page: int = Field(description="This page (from 1).")
    pages: int = Field(description="Pages of flagged queries in the window.")
    queries: int = Field(description="Flagged queries in the window, every page.")
    preparing: int = Field(
        description="Queries of this page left out until their vectors are made (in the background; list again)."
    )


class ReviewQueueResponse(QueuePage):
    """``GET /admin/review``."""

    index_id: str = Field(description="The index the listing was made on: send it with an action.")
    days: float
    groups: list[ReviewGroup]
    total_groups: int
    active_actions: int = Field(description="Decisions in force (not reverted).")
    reviewed_file_problems: list[str] = Field(
        description="Lines of the reviewed file its reader refuses (file:line: reason): skipped, never applied."
    )
    entries: list[EntryRef] = Field(description="Every entry, for a choice beyond the suggestions.")
    rebuild: dict[str, Any] | None = Field(
        description="The last rebuild's state: running, queued, done, failed or interrupted, with `pending` "
        "(decisions the current build lacks), `attempt`, `attempts_left` and `next_retry_at`; times in ISO 8601, UTC "
        "(docs/learning.md)."
    )


class GapsResponse(QueuePage):
    """``GET /admin/gaps``."""

    index_id: str
    days: float
    gaps: list[ReviewGroup]
    total: int


class RebuildResponse(BaseModel):
    """``POST /admin/review/rebuild``: the build started (or queued behind the one running), or nothing to build."""

    rebuild: dict[str, Any] | None
    started: bool = Field(description="False when the current build has every decision already: nothing was built.")


class ReviewActionOut(BaseModel):
    """A decision as the reviewed file keeps it."""

    id: str
    at: str
    by: str
    action: Literal["attach", "not_answered", "dismiss", "revert"]
    faq_id: str | None = None
    questions: list[str] = []
    query_keys: list[str] = []
    index_id: str | None = None
    note: str | None = None
    reverts: str | None = Field(None, description="For a revert: the action it cancels.")
    reverted_by: str | None = Field(None, description="In the history: the revert that cancelled it.")


class ReviewActionResponse(BaseModel):
    """A decision recorded, and the rebuild it started (null for a dismissal)."""

    action: ReviewActionOut
    rebuild: dict[str, Any] | None


class ReviewActionsResponse(BaseModel):
    """``GET /admin/review/actions``: every decision, newest first."""

    actions: list[ReviewActionOut]
