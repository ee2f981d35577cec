"""The review queue and the FAQ's gaps: logged queries that went unanswered or were found unhelpful, grouped by
meaning, each group with the entries it most resembles; and the FAQ owner's actions on them.

Reads the query log (``querylog``) and the reviewed file (``service.reviewed_file``); embeds each distinct redacted
query once with the served model (kept in the log's ``vectors`` table); groups with ``grouping.group_by_meaning``.
An action is checked against the index the queue was listed with (a group listed before a rebuild is stale: its
suggestions and ids may no longer hold) and against the corpus rules before it is appended.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..corpus import CorpusError, FaqEntry
from ..errors import Conflict, ErrorCode, InvalidRequest, NotFound, ServiceError
from ..indexing.store import read_manifest
from ..reviewed_file import (
    ACTIONS,
    ReviewAction,
    active_actions,
    append_action,
    decisions_lock,
    merge_actions,
    new_action,
    read_actions,
    reviewed_keys,
    reviewed_path,
)
from ..search.engine import SearchEngine
from . import querylog
from .grouping import group_by_meaning
from .redaction import redact

log = logging.getLogger(__name__)

#: Distinct queries looked at per listing (the most flagged first): a page of the queue.
MAX_QUERIES = 500
#: Queries a listing embeds itself at most; the others wait for the background (``precompute_vectors``) and are
#: counted in ``preparing``, so that a listing never spends minutes encoding.
MAX_ENCODED_PER_LISTING = 16
#: Example wordings shown per group.
EXAMPLES = 5
#: Entries suggested per group.
SUGGESTED = 3
#: Entries listed with the queue at most (the page's choice beyond the suggestions).
MAX_LISTED_ENTRIES = 5000


@dataclass(frozen=True)
class Source:
    """Where the queue comes from: the log, the corpus (its reviewed file beside it), and the engine serving now."""

    log_path: str
    corpus: str
    engine: SearchEngine
    #: The index directory (its ``current`` build: a listing made by a worker that already switched is not stale).
    index_dir: str | None = None

    @property
    def reviewed_file(self) -> str:
        return str(reviewed_path(self.corpus))


def _vectors(
    source: Source, stats: list[querylog.QueryStats], encode_at_most: int | None = -1
) -> tuple[np.ndarray, list[int]]:
    """The redacted queries' embeddings, from the log's cache, and up to ``encode_at_most`` missing ones encoded now
    (default ``MAX_ENCODED_PER_LISTING``; None: all) and cached; returns them and the positions (in ``stats``) they
    are for (the rest are still to be encoded)."""
    if encode_at_most == -1:
        encode_at_most = MAX_ENCODED_PER_LISTING
    engine = source.engine
    model = engine.index.manifest.model.name
    dim = engine.embedder.dimension
    cached = querylog.cached_vectors(source.log_path, [s.key for s in stats], model)
    out = np.empty((len(stats), dim), dtype=np.float32)
    have, missing = [], []
    for i, s in enumerate(stats):
        blob = cached.get(s.key)
        if blob is not None and len(blob) == 4 * dim:
            out[i] = np.frombuffer(blob, dtype=np.float32)
            have.append(i)
        else:
            missing.append(i)
    missing = missing[:encode_at_most] if encode_at_most is not None else missing
    if missing:
        encoded = engine.embedder.encode([stats[i].text for i in missing], kind="query")
        out[missing] = encoded
        try:
            querylog.store_vectors(
                source.log_path,
                [(stats[i].key, encoded[j].astype(np.float32).tobytes()) for j, i in enumerate(missing)],
                model,
            )
        except sqlite3.Error as exc:  # a cache only: the listing goes on, the next one encodes them again
            log.warning("could not cache the queue's query vectors: %s", exc)
    ready = sorted(have + missing)
    return out[ready], ready


def precompute_vectors(source: Source, days: float, at_most: int = 32) -> int:
    """Encode (and cache) the vectors of up to ``at_most`` flagged queries that have none yet, the most flagged
    first: what a worker does in the background so that listing the queue finds them ready. Returns how many.

    Raises:
        sqlite3.Error: the log cannot be read.
    """
    since = time.time() - days * 86400
    stats, _ = querylog.query_stats(source.log_path, since, MAX_QUERIES)
    model = source.engine.index.manifest.model.name
    cached = querylog.cached_vectors(source.log_path, [s.key for s in stats], model)
    todo = [s for s in stats if s.key not in cached][:at_most]
    if todo:
        _vectors(source, todo, encode_at_most=None)
    return len(todo)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _flagged_groups(
    source: Source, days: float, decided: set[str], skip_reason: str | None = None, page: int = 1
) -> tuple[list[dict], dict]:
    """The flagged queries of the last ``days`` days not ``decided``, ``MAX_QUERIES`` a page, grouped, the groups
    the FAQ failed most first (refused, or its answer judged unhelpful), then the most asked; and the paging
    (``page``, ``pages``, ``queries``, ``preparing``: queries left out until their vectors are made)."""
    since = time.time() - days * 86400
    offset = (page - 1) * MAX_QUERIES
    stats, total = querylog.query_stats(
        source.log_path, since, MAX_QUERIES, skip_reason=skip_reason, exclude=decided, offset=offset
    )
    groups, preparing = _groups(source, stats)
    # The most failed first, then the most asked, then the one with the most wordings (more of what users say).
    groups.sort(key=lambda g: (-(g["unanswered"] + g["not_helpful"]), -g["asked"], -g["queries"], g["id"]))
    paging = {"page": page, "pages": max(1, -(-total // MAX_QUERIES)), "queries": total, "preparing": preparing}
    return groups, paging


def _groups(source: Source, stats: list[querylog.QueryStats]) -> tuple[list[dict], int]:
    if not stats:
        return [], 0
    engine = source.engine
    vectors, ready = _vectors(source, stats)
    preparing = len(stats) - len(ready)
    stats = [stats[i] for i in ready]
    if not stats:
        return [], preparing
    groups = []
    for members in group_by_meaning(vectors):
        items = sorted((stats[i] for i in members), key=lambda s: (-s.asked, s.key))
        keys = sorted(s.key for s in items)
        centroid = vectors[members].mean(axis=0)
        centroid /= max(float(np.linalg.norm(centroid)), 1e-12)
        # The entries nearest the group's meaning (its centroid), read with the most asked wording's words.
        outcome = engine.search_encoded(items[0].text, centroid.astype(np.float32), top_k=SUGGESTED)
        counts = querylog.count_units(items)  # one client's paraphrases count once, as its repeats do
        groups.append(
            {
                "id": "g" + hashlib.sha256("\0".join(keys).encode()).hexdigest()[:12],
                "queries": len(items),
                "asked": counts["asked"],
                "unanswered": counts["unanswered"],
                "not_helpful": counts["not_helpful"],
                "first_seen": _iso(min(s.first_seen for s in items)),
                "last_seen": _iso(max(s.last_seen for s in items)),
                "examples": [
                    {
                        "key": s.key,
                        "text": s.text,
                        "asked": s.asked,
                        "unanswered": s.unanswered,
                        "not_helpful": s.not_helpful,
                    }
                    for s in items[:EXAMPLES]
                ],
                "query_keys": [s.key for s in items],
                # Every wording an action on the group decides (the examples are only the most asked).
                "wordings": [{"key": s.key, "text": s.text, "asked": s.asked} for s in items],
                "reasons": _sorted_counts([counts["reasons"]]),
                "shown": _sorted_counts([counts["shown"]]),
                "not_helpful_entries": _sorted_counts([counts["not_helpful_entries"]]),
                "suggested": [
                    {"faq_id": r.faq_id, "question": r.question, "score": round(r.score, 4)} for r in outcome.results
                ],
            }
        )
    return groups, preparing


def _sorted_counts(counts: list[Counter]) -> dict[str, int]:
    """The counts added up, most first (ties by name)."""
    return dict(sorted(sum(counts, Counter()).items(), key=lambda kv: (-kv[1], kv[0])))


def review_queue(source: Source, days: float, limit: int = 50, page: int = 1) -> dict:
    """The groups to review: queries of the last ``days`` days unanswered or marked not helpful and not reviewed
    yet, grouped by meaning, the most flagged groups first; one page of ``MAX_QUERIES`` queries at a time.

    Raises:
        sqlite3.Error: the log cannot be read.
        CorpusError: the reviewed file cannot be read at all (a bad line is only skipped, and listed in
            ``reviewed_file_problems``).
    """
    problems: list[CorpusError] = []
    actions = read_actions(source.reviewed_file, problems)
    groups, paging = _flagged_groups(
        source, days, set(reviewed_keys(actions)), skip_reason="known_non_answer", page=page
    )
    entries = source.engine.index.entries
    return {
        "index_id": source.engine.index.index_id,
        "days": days,
        "groups": groups[:limit],
        "total_groups": len(groups),
        **paging,
        "active_actions": len(active_actions(actions)),
        "reviewed_file_problems": [str(p) for p in problems[:20]],
        # Every entry, for choosing one the suggestions missed (the page's list).
        "entries": [{"faq_id": i, "question": e.question} for i, e in list(entries.items())[:MAX_LISTED_ENTRIES]],
    }


def gaps(source: Source, days: float, limit: int = 50, page: int = 1) -> dict:
    """The FAQ's missing questions: groups of queries the service did not answer (or whose answer was marked not
    helpful), by how often that happened, then by how often they were asked. Queries attached to an entry or
    dismissed are no gap; known non-answers are.

    Raises:
        sqlite3.Error: the log cannot be read.
    """
    decided = set(reviewed_keys(read_actions(source.reviewed_file), kinds=("attach", "dismiss")))
    groups, paging = _flagged_groups(source, days, decided, page=page)
    return {
        "index_id": source.engine.index.index_id,
        "days": days,
        "gaps": groups[:limit],
        "total": len(groups),
        **paging,
    }


def apply(
    source: Source,
    action: str,
    query_keys: list[str],
    index_id: str,
    by: str,
    faq_id: str | None = None,
    note: str | None = None,
    days: float = 30,
) -> ReviewAction:
    """Check and append one action on queries of the queue; returns it (the caller rebuilds).

    Raises:
        Conflict: ``stale_review`` (the index changed since the queue was listed), ``already_reviewed``,
            ``review_conflict`` (the corpus rules refuse it: e.g. a known non-answer that is the entry's question).
        NotFound: ``unknown_entry`` (no such entry in the served index), ``unknown_query`` (no such query in the
            log's window: purged, or never asked).
    """
    assert action in ACTIONS
    engine = source.engine
    current = engine.index.index_id
    built_from = engine.index.manifest.corpus.file
    if built_from != Path(source.corpus).name:
        # A decision written next to another corpus would rebuild the index from that corpus.
        raise Conflict(
            f"the served index was built from {built_from!r}, not from FAQ_CORPUS ({Path(source.corpus).name!r}): "
            "set FAQ_CORPUS to the corpus this index is built from",
            code=ErrorCode.CORPUS_MISMATCH,
        )
    # Workers switch builds one after the other: the listing may come from one that already serves the newest.
    if index_id not in (current, _published(source)):
        raise Conflict(
            f"the index changed since this queue was listed (listed with {index_id}, now {current}): list it again",
            code=ErrorCode.STALE_REVIEW,
        )
    if action != "dismiss" and faq_id not in engine.index.entries:
        raise NotFound(f"no FAQ entry with id {faq_id!r} in the served index", code=ErrorCode.UNKNOWN_ENTRY)
    # Redacted again as the log now redacts (a row written by an older version may hold what a corpus may not, or a
    # detail its patterns missed).
    logged = querylog.texts_of(source.log_path, query_keys, time.time() - days * 86400)
    texts = {k: redact(t) for k, t in logged.items()}
    unknown = [k for k in query_keys if not texts.get(k)]
    if unknown:
        raise NotFound(
            f"{len(unknown)} of these queries are not in the log (purged after its retention, or never asked): "
            f"{', '.join(unknown[:5])}",
            code=ErrorCode.UNKNOWN_QUERY,
        )
    with decisions_lock(source.reviewed_file):  # two reviewers never both decide the same queries
        actions = read_actions(source.reviewed_file)
        record = _checked(source, actions, action, query_keys, texts, index_id, by, faq_id, note)
        _append(source, record)
    return record


def _append(source: Source, record: ReviewAction) -> None:
    """Append a checked action; one the reviewed file's reader would refuse is a 400, and nothing is written.

    Raises:
        InvalidRequest: ``invalid_review_action``. OSError: the file cannot be written (it is as it was).
    """
    try:
        append_action(source.reviewed_file, record)
    except CorpusError as exc:
        raise InvalidRequest(
            f"this decision would make a line the reviewed file's reader refuses: {exc.reason}",
            code=ErrorCode.INVALID_REVIEW_ACTION,
        ) from None


def _checked(source, actions, action, query_keys, texts, index_id, by, faq_id, note) -> ReviewAction:
    """The new action, if no earlier one decided these queries and the corpus rules take it."""
    done = reviewed_keys(actions)
    already = [k for k in query_keys if k in done]
    if already:
        first = done[already[0]]
        raise Conflict(
            f"already reviewed: {len(already)} of the {len(query_keys)} queries ({first.action} by {first.by}, "
            f"action {first.id}): revert that action first",
            code=ErrorCode.ALREADY_REVIEWED,
        )
    record = new_action(
        action,
        by,
        faq_id=faq_id if action != "dismiss" else None,
        questions=tuple(texts[k] for k in query_keys),
        query_keys=tuple(query_keys),
        index_id=index_id,
        note=note,
    )
    if action != "dismiss":
        entries: list[FaqEntry] = list(source.engine.index.entries.values())
        _, report = merge_actions(entries, [record])
        if report.skipped:
            raise Conflict(f"the corpus refuses this action: {report.skipped[0]}", code=ErrorCode.REVIEW_CONFLICT)
    return record


def _published(source: Source) -> str | None:
    """The id of the build the index directory points to now (None when it cannot be read)."""
    try:
        return read_manifest(source.index_dir).index_id if source.index_dir else None
    except (ServiceError, KeyError, TypeError):
        return None


def revert(source: Source, action_id: str, by: str) -> tuple[ReviewAction, ReviewAction]:
    """Append a revert of an earlier action.

    Returns:
        The revert, and the action it cancels (a reverted dismissal changes nothing in the index).
    Raises:
        NotFound: ``unknown_action``. Conflict: ``already_reverted``.
    """
    with decisions_lock(source.reviewed_file):
        actions = read_actions(source.reviewed_file)
        target = next((a for a in actions if a.id == action_id and a.action != "revert"), None)
        if target is None:
            raise NotFound(f"no review action with id {action_id!r}", code=ErrorCode.UNKNOWN_ACTION)
        if any(a.action == "revert" and a.reverts == action_id for a in actions):
            raise Conflict(f"action {action_id} is already reverted", code=ErrorCode.ALREADY_REVERTED)
        record = new_action("revert", by, reverts=action_id)
        _append(source, record)
    return record, target


def list_actions(source: Source) -> list[dict]:
    """Every action of the reviewed file, newest first, each with ``reverted_by`` when cancelled."""
    actions = read_actions(source.reviewed_file)
    reverted = {a.reverts: a.id for a in actions if a.action == "revert"}
    return [{**a.to_dict(), "reverted_by": reverted.get(a.id)} for a in reversed(actions)]
