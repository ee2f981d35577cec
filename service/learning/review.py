"""The review queue and the FAQ's gaps: logged queries that went unanswered or were found unhelpful, grouped by
meaning, each group with the entries it most resembles; and the FAQ owner's actions on them.

Reads the query log (``querylog``) and the reviewed file (``service.reviewed``); embeds each distinct redacted query
once with the served model (kept in the log's ``vectors`` table); groups with ``grouping.group_by_meaning``.
An action is checked against the index the queue was listed with (a group listed before a rebuild is stale: its
suggestions and ids may no longer hold) and against the corpus rules before it is appended.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np

from ..corpus import FaqEntry
from ..errors import Conflict, NotFound
from ..reviewed import (
    ACTIONS,
    ReviewAction,
    append_action,
    merge_actions,
    new_action,
    read_actions,
    reviewed_keys,
)
from . import querylog
from .grouping import group_by_meaning

#: Distinct queries looked at per listing (the most asked first).
MAX_QUERIES = 500
#: Example wordings shown per group.
EXAMPLES = 5
#: Entries suggested per group.
SUGGESTED = 3


@dataclass(frozen=True)
class Source:
    """Where the queue comes from: the log, the reviewed file, and the engine serving now."""

    log_path: str
    reviewed_file: str
    engine: object  # search.engine.SearchEngine


def _vectors(source: Source, stats: list[querylog.QueryStats]) -> np.ndarray:
    """The redacted queries' embeddings: from the log's cache, the missing ones encoded now and cached."""
    engine = source.engine
    model = engine.index.manifest["model"]["name"]
    dim = engine.embedder.dimension
    cached = querylog.cached_vectors(source.log_path, [s.key for s in stats], model)
    out = np.empty((len(stats), dim), dtype=np.float32)
    missing = []
    for i, s in enumerate(stats):
        blob = cached.get(s.key)
        if blob is not None and len(blob) == 4 * dim:
            out[i] = np.frombuffer(blob, dtype=np.float32)
        else:
            missing.append(i)
    if missing:
        encoded = engine.embedder.encode([stats[i].text for i in missing], kind="query")
        out[missing] = encoded
        querylog.store_vectors(
            source.log_path,
            [(stats[i].key, encoded[j].astype(np.float32).tobytes()) for j, i in enumerate(missing)],
            model,
        )
    return out


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _add(total: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    for k, v in more.items():
        total[k] = total.get(k, 0) + v
    return total


def _groups(source: Source, stats: list[querylog.QueryStats]) -> list[dict]:
    if not stats:
        return []
    engine = source.engine
    vectors = _vectors(source, stats)
    groups = []
    for members in group_by_meaning(vectors):
        items = sorted((stats[i] for i in members), key=lambda s: (-s.asked, s.key))
        keys = sorted(s.key for s in items)
        centroid = vectors[members].mean(axis=0)
        centroid /= max(float(np.linalg.norm(centroid)), 1e-12)
        # The entries nearest the group's meaning (its centroid), read with the most asked wording's words.
        outcome = engine.search_encoded(items[0].text, centroid.astype(np.float32), top_k=SUGGESTED)
        groups.append(
            {
                "id": "g" + hashlib.sha256("\0".join(keys).encode()).hexdigest()[:12],
                "queries": len(items),
                "asked": sum(s.asked for s in items),
                "unanswered": sum(s.unanswered for s in items),
                "not_helpful": sum(s.not_helpful for s in items),
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
                "reasons": _sorted_counts([s.reasons for s in items]),
                "shown": _sorted_counts([s.shown for s in items]),
                "not_helpful_entries": _sorted_counts([s.not_helpful_entries for s in items]),
                "suggested": [
                    {"faq_id": r.faq_id, "question": r.question, "score": round(r.score, 4)} for r in outcome.results
                ],
            }
        )
    return groups


def _sorted_counts(counts: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for c in counts:
        _add(total, c)
    return dict(sorted(total.items(), key=lambda kv: (-kv[1], kv[0])))


def review_queue(source: Source, days: float, limit: int = 50) -> dict:
    """The groups to review: queries of the last ``days`` days unanswered or marked not helpful and not reviewed
    yet, grouped by meaning, the most flagged groups first.

    Raises:
        sqlite3.Error: the log cannot be read.
        CorpusError: the reviewed file has a bad line.
    """
    actions = read_actions(source.reviewed_file)
    done = reviewed_keys(actions)
    since = time.time() - days * 86400
    stats = [s for s in querylog.query_stats(source.log_path, since, MAX_QUERIES) if s.key not in done]
    groups = _groups(source, stats)
    groups.sort(key=lambda g: (-(g["unanswered"] + g["not_helpful"]), -g["asked"], g["id"]))
    return {
        "index_id": source.engine.index.index_id,
        "days": days,
        "groups": groups[:limit],
        "total_groups": len(groups),
        "reviewed_actions": len([a for a in actions if a.action != "revert"]),
    }


def gaps(source: Source, days: float, limit: int = 50) -> dict:
    """The FAQ's missing questions: groups of queries the service did not answer (or that were marked not helpful),
    by how often they were asked. Queries attached to an entry or dismissed are no gap; known non-answers are.

    Raises:
        sqlite3.Error: the log cannot be read.
    """
    done = reviewed_keys(read_actions(source.reviewed_file), kinds=("attach", "dismiss"))
    since = time.time() - days * 86400
    stats = [s for s in querylog.query_stats(source.log_path, since, MAX_QUERIES) if s.key not in done]
    groups = _groups(source, stats)
    groups.sort(key=lambda g: (-g["asked"], -(g["unanswered"] + g["not_helpful"]), g["id"]))
    return {"index_id": source.engine.index.index_id, "days": days, "gaps": groups[:limit], "total": len(groups)}


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
    if index_id != current:
        raise Conflict(
            f"the index changed since this queue was listed (listed with {index_id}, now {current}): list it again",
            code="stale_review",
        )
    if action != "dismiss" and faq_id not in engine.index.entries:
        raise NotFound(f"no FAQ entry with id {faq_id!r} in the served index", code="unknown_entry")
    texts = querylog.texts_of(source.log_path, query_keys, time.time() - days * 86400)
    unknown = [k for k in query_keys if k not in texts]
    if unknown:
        raise NotFound(
            f"{len(unknown)} of these queries are not in the log (purged after its retention, or never asked): "
            f"{', '.join(unknown[:5])}",
            code="unknown_query",
        )
    actions = read_actions(source.reviewed_file)
    done = reviewed_keys(actions)
    already = [k for k in query_keys if k in done]
    if already:
        raise Conflict(
            f"{len(already)} of these queries are already reviewed ({done[already[0]].action} by "
            f"{done[already[0]].by}, action {done[already[0]].id}): revert that action first",
            code="already_reviewed",
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
        entries: list[FaqEntry] = list(engine.index.entries.values())
        _, report = merge_actions(entries, [record])
        if report.skipped:
            raise Conflict(f"the corpus refuses this action: {report.skipped[0]}", code="review_conflict")
    append_action(source.reviewed_file, record)
    return record


def revert(source: Source, action_id: str, by: str) -> ReviewAction:
    """Append a revert of an earlier action.

    Raises:
        NotFound: ``unknown_action``. Conflict: ``already_reverted``.
    """
    actions = read_actions(source.reviewed_file)
    target = next((a for a in actions if a.id == action_id and a.action != "revert"), None)
    if target is None:
        raise NotFound(f"no review action with id {action_id!r}", code="unknown_action")
    if any(a.action == "revert" and a.reverts == action_id for a in actions):
        raise Conflict(f"action {action_id} is already reverted", code="already_reverted")
    record = new_action("revert", by, reverts=action_id)
    append_action(source.reviewed_file, record)
    return record


def list_actions(source: Source) -> list[dict]:
    """Every action of the reviewed file, newest first, each with ``reverted_by`` when cancelled."""
    actions = read_actions(source.reviewed_file)
    reverted = {a.reverts: a.id for a in actions if a.action == "revert"}
    return [{**a.to_dict(), "reverted_by": reverted.get(a.id)} for a in reversed(actions)]
