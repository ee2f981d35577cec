"""Evaluation sets: labelled data turned into FAQ entries to index and queries to ask.

An evaluation set is a list of FAQ entries (what gets indexed), in-domain queries with the ids of the entries that
answer them, and optionally out-of-domain queries that no entry answers. Loaders cover the three public French sets
under ``../shared/data`` and a generic format for a user's own FAQ (docs/quality.md, "Measure your own FAQ").
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..corpus import FaqEntry, read_corpus
from ..settings import REPO_ROOT
from ..synonyms import Synonyms

#: Chorus Pro questions as users type them (no accents, typos, synonyms), each with its entry (and, for a question
#: about one sub-section, the passage that must come first); written by the team, none copied from the FAQ.
CHORUS_QUESTIONS = REPO_ROOT / "tests" / "data" / "chorus_paraphrases.jsonl"
#: Questions about Chorus Pro that none of its five entries answers (the answer check's dev set), written by the team.
CHORUS_GAPS = REPO_ROOT / "tests" / "data" / "chorus_gaps.jsonl"
#: A second such set, other wordings written apart from the dev set: the questions a review queue would have seen.
CHORUS_GAPS_SEEN = REPO_ROOT / "tests" / "data" / "chorus_gaps_seen.jsonl"


@dataclass(frozen=True)
class EvalQuery:
    """A question and the ids of the entries that answer it."""

    qid: str
    text: str
    relevant: frozenset[str]


@dataclass
class EvalSet:
    """What to index and what to ask."""

    name: str
    entries: list[FaqEntry]
    queries: list[EvalQuery]
    ood_queries: list[str] = field(default_factory=list)
    notes: str = ""
    synonyms: Synonyms | None = None  # written in the indexed corpus's header


def _read_jsonl(path: str | os.PathLike) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                raise ValueError(f"{path}:{n}: not valid JSON ({exc})") from exc
    return rows


def _piaf_entry(p: dict) -> FaqEntry:
    # A Wikipedia paragraph has no question; its article title stands in for one.
    return FaqEntry(id=p["id"], question=p["title"], answer=p["text"])


def _piaf_split(data_dir: Path) -> tuple[list[dict], list[dict]]:
    """PIAF paragraphs of every other article (by sorted title), and the questions on the remaining articles."""
    paragraphs = _read_jsonl(data_dir / "piaf_v1.1" / "corpus.jsonl")
    titles = sorted({p["title"] for p in paragraphs})
    kept_titles = set(titles[0::2])
    kept = [p for p in paragraphs if p["title"] in kept_titles]
    left_out = {p["id"] for p in paragraphs if p["title"] not in kept_titles}
    questions = [q for q in _read_jsonl(data_dir / "piaf_v1.1" / "queries.jsonl") if q["pid"] in left_out]
    return kept, questions


def _sample(items: list, n: int | None, seed: int) -> list:
    if n is None or n >= len(items):
        return list(items)
    return random.Random(seed).sample(items, n)


def load_cnil(data_dir: str | os.PathLike, ood_sample: int = 1000, seed: int = 13) -> EvalSet:
    """cnil_faq: 523 entries, its 168 ``paraphrase`` queries, PIAF questions as out-of-domain queries.

    An entry with the same answer text as the labelled one counts as relevant (9 texts are duplicated).
    Report only: nothing may be fitted on this set.
    """
    data_dir = Path(data_dir)
    corpus = _read_jsonl(data_dir / "cnil_faq" / "corpus.jsonl")
    same_text: dict[str, set[str]] = defaultdict(set)
    for row in corpus:
        same_text[row["text"].strip()].add(row["id"])
    text_of = {row["id"]: row["text"].strip() for row in corpus}
    entries = [
        FaqEntry(id=row["id"], question=row["question"], answer=row["text"], tags=(row["theme"],)) for row in corpus
    ]
    queries = [
        EvalQuery(q["qid"], q["query"], frozenset(same_text[text_of[q["pid"]]]))
        for q in _read_jsonl(data_dir / "cnil_faq" / "queries.jsonl")
        if q["kind"] == "paraphrase"
    ]
    ood = [q["query"] for q in _sample(_read_jsonl(data_dir / "piaf_v1.1" / "queries.jsonl"), ood_sample, seed)]
    return EvalSet("cnil_faq", entries, queries, ood, "report only")


#: covid_quebec_fr's questions split for what is written by reading questions (a synonym list): ``train`` is each
#: answer's 1st, 3rd, 5th… other question, ``heldout`` its 2nd, 4th…; ``all`` both.
COVID_QUESTIONS = ("all", "train", "heldout")


def load_covid(
    data_dir: str | os.PathLike,
    distractors: bool = True,
    ood_sample: int = 1000,
    seed: int = 13,
    questions: str = "all",
) -> EvalSet:
    """covid_quebec_fr: the 50 answers indexed with their first question, queried with the other 662.

    With ``distractors``, PIAF paragraphs of half the articles join the index; questions about the other half
    are the out-of-domain queries, so no out-of-domain query has its paragraph in the index. ``questions`` keeps
    all of them or one half (``COVID_QUESTIONS``).
    """
    if questions not in COVID_QUESTIONS:
        raise ValueError(f"questions must be one of {COVID_QUESTIONS}, not {questions!r}")
    data_dir = Path(data_dir)
    faq = _read_jsonl(data_dir / "covid_quebec_fr" / "faq_fr.jsonl")
    entries = [FaqEntry(id=row["id"], question=row["questions"][0], answer=row["answer"]) for row in faq]
    queries = [
        EvalQuery(f"{row['id']}-q{i}", q, frozenset([row["id"]]))
        for row in faq
        for i, q in enumerate(row["questions"][1:], start=1)
        if questions == "all" or (i % 2 == 1) == (questions == "train")
    ]
    if not distractors and not ood_sample:  # covid alone (training data): PIAF is not read
        return EvalSet("covid_quebec_fr", entries, queries, [], "development set: tune here")
    kept, ood_questions = _piaf_split(data_dir)
    if distractors:
        entries += [_piaf_entry(p) for p in kept]
    ood = [q["query"] for q in _sample(ood_questions, ood_sample, seed)]
    return EvalSet("covid_quebec_fr", entries, queries, ood, "development set: tune here")


def load_piaf(data_dir: str | os.PathLike, sample: int = 1000, seed: int = 13) -> EvalSet:
    """piaf_v1.1: 1,518 Wikipedia paragraphs (title as the question), a seeded sample of its questions."""
    data_dir = Path(data_dir)
    entries = [_piaf_entry(p) for p in _read_jsonl(data_dir / "piaf_v1.1" / "corpus.jsonl")]
    rows = _sample(_read_jsonl(data_dir / "piaf_v1.1" / "queries.jsonl"), sample, seed)
    queries = [EvalQuery(q["qid"], q["query"], frozenset([q["pid"]])) for q in rows]
    return EvalSet("piaf", entries, queries, [], "questions written while reading the paragraph")


def load_custom(corpus: str | os.PathLike, queries: str | os.PathLike, ood: str | os.PathLike | None = None) -> EvalSet:
    """A user's own FAQ: a corpus in the service's format and a JSONL of ``{"query", "faq_id"}``.

    ``faq_id`` may be a list when several entries answer. ``ood`` is an optional JSONL of ``{"query"}`` lines
    that no entry answers.
    """
    identity, entries = read_corpus(corpus)
    ids = {e.id for e in entries}
    out: list[EvalQuery] = []
    for n, row in enumerate(_read_jsonl(queries), start=1):
        if not isinstance(row, dict) or "query" not in row or "faq_id" not in row:
            raise ValueError(f'{queries}:{n}: each line must be an object with "query" and "faq_id"')
        relevant = row["faq_id"] if isinstance(row["faq_id"], list) else [row["faq_id"]]
        unknown = [r for r in relevant if r not in ids]
        if unknown:
            raise ValueError(f"{queries}:{n}: faq_id {unknown} is not in the corpus")
        out.append(EvalQuery(str(row.get("qid", n)), row["query"], frozenset(relevant)))
    ood_queries = []
    for n, row in enumerate(_read_jsonl(ood) if ood else [], start=1):
        if not isinstance(row, dict) or "query" not in row:
            raise ValueError(f'{ood}:{n}: each line must be an object with "query"')
        ood_queries.append(row["query"])
    return EvalSet(Path(corpus).stem, entries, out, ood_queries, synonyms=identity.synonyms or None)


def without_fifth(evalset: EvalSet, seed: int = 13) -> tuple[EvalSet, list[EvalQuery]]:
    """The hard no-answer case: drop a fifth of the entries that have queries, return the set and their queries.

    Returns:
        The set without those entries and without their queries, and the queries whose every relevant entry
        was removed (they have no answer in the smaller index).
    """
    answered_ids = sorted({r for q in evalset.queries for r in q.relevant})
    removed = set(random.Random(seed).sample(answered_ids, max(1, len(answered_ids) // 5)))
    orphans = [q for q in evalset.queries if q.relevant <= removed]
    kept_queries = [q for q in evalset.queries if not q.relevant <= removed]
    smaller = EvalSet(
        f"{evalset.name}-minus-fifth",
        [e for e in evalset.entries if e.id not in removed],
        [EvalQuery(q.qid, q.text, q.relevant - removed) for q in kept_queries],
        evalset.ood_queries,
        evalset.notes,
        evalset.synonyms,
    )
    return smaller, orphans


def questions_by_answer(queries: list[EvalQuery]) -> dict[str, list[str]]:
    """The queries' texts by answer (of several relevant entries, the least id), in the set's order."""
    out: dict[str, list[str]] = {}
    for q in queries:
        out.setdefault(min(q.relevant), []).append(q.text)
    return out


def user_questions(evalset: EvalSet) -> list[tuple[str, str]]:
    """The set's labelled queries as ``(text, faq_id)`` training pairs (of several relevant entries, the least id)."""
    return [(q.text, min(q.relevant)) for q in evalset.queries]


def _corpus_text(entries: list[FaqEntry], synonyms: Synonyms | None = None) -> str:
    header = json.dumps({"faq": {"synonyms": synonyms.to_dict()}}, ensure_ascii=False) + "\n" if synonyms else ""
    return header + "".join(json.dumps(entry.to_dict(), ensure_ascii=False) + "\n" for entry in entries)


def write_corpus(entries: list[FaqEntry], path: str | os.PathLike, synonyms: Synonyms | None = None) -> Path:
    """Write entries as a corpus file in the service's format (with a header holding ``synonyms`` when given)."""
    path = Path(path)
    path.write_text(_corpus_text(entries, synonyms), encoding="utf-8")
    return path


def entries_checksum(entries: list[FaqEntry]) -> str:
    """The ``corpus_checksum`` of the file ``write_corpus(entries)`` would write, without writing it."""
    return hashlib.sha256(_corpus_text(entries).encode("utf-8")).hexdigest()


def chorus_questions(path: str | os.PathLike = CHORUS_QUESTIONS) -> list[tuple[str, str]]:
    """The team's Chorus Pro paraphrases as ``(query, faq_id)`` pairs (the benchmarks' and tests' queries)."""
    return [(row["query"], row["faq_id"]) for row in _read_jsonl(path)]


def chorus_gaps(path: str | os.PathLike = CHORUS_GAPS) -> list[str]:
    """The team's Chorus Pro questions that no entry answers."""
    return [row["query"] for row in _read_jsonl(path)]
