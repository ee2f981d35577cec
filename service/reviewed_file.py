"""The reviewed file: what the FAQ owner decided about users' real questions, merged into the corpus at build time.

It lives next to the corpus (``corpus/<name>.reviewed.jsonl`` for ``corpus/<name>.jsonl``), so the official corpus
file is never rewritten. One JSON object per line, appended, never edited (every action is attributable and
reversible)::

    {"id": "r-…", "at": "2026-…Z", "by": "marie", "action": "attach", "faq_id": "gestionnaire",
     "questions": ["…"], "query_keys": ["q…"], "index_id": "…", "note": null}
    {"id": "r-…", "at": "…", "by": "marie", "action": "revert", "reverts": "r-…"}

``attach`` adds the questions to the entry's ``alt_questions``; ``not_answered`` to its ``not_questions`` (known
non-answers, which the answer decision refuses); ``dismiss`` takes queries out of the review queue and changes
nothing in the index; ``revert`` cancels an earlier action. Actions apply in file order, so a later decision on the
same question for the same entry replaces an earlier one. An action on an entry the corpus no longer has is skipped
(and reported), never an error: the owner may delete an entry whatever was reviewed about it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import secrets
import time
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path

from .corpus import ID_PATTERN, CorpusError, FaqEntry, stable_read, text_field
from .files import exclusive_lock

log = logging.getLogger(__name__)

#: What an action may do to the questions it names.
ACTIONS = ("attach", "not_answered", "dismiss")
#: Limits of one action (questions, characters of a question, of ``by``).
MAX_QUESTIONS, MAX_QUESTION_CHARS, MAX_BY_CHARS = 500, 2000, 100


def fold(text: str) -> str:
    """How two wordings are the same question here: case, accents, spacing and end punctuation aside."""
    text = unicodedata.normalize("NFKD", text.casefold())
    return " ".join("".join(c for c in text if not unicodedata.combining(c)).split()).strip(" ?!.;:,")


def reviewed_path(corpus: str | os.PathLike) -> Path:
    """The reviewed file of a corpus: ``<dir>/<stem>.reviewed.jsonl``."""
    corpus = Path(corpus)
    return corpus.with_name(corpus.stem + ".reviewed.jsonl")


@dataclass(frozen=True)
class ReviewAction:
    """One line of the reviewed file."""

    id: str
    at: str
    by: str
    action: str  # one of ACTIONS, or "revert"
    faq_id: str | None = None
    questions: tuple[str, ...] = ()
    query_keys: tuple[str, ...] = ()
    index_id: str | None = None
    note: str | None = None
    reverts: str | None = None

    def to_dict(self) -> dict:
        """The JSON line (and the API's shape of an action)."""
        out = {"id": self.id, "at": self.at, "by": self.by, "action": self.action}
        if self.action == "revert":
            out["reverts"] = self.reverts
        else:
            out.update(
                faq_id=self.faq_id,
                questions=list(self.questions),
                query_keys=list(self.query_keys),
                index_id=self.index_id,
                note=self.note,
            )
        return out


def new_action(action: str, by: str, **fields) -> ReviewAction:
    """A new action with a fresh id and the current time."""
    return ReviewAction(
        id="r-" + secrets.token_hex(6),
        at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        by=by,
        action=action,
        **fields,
    )


def check_action(action: ReviewAction, path: str | os.PathLike) -> None:
    """Check a new action with the reader's own rules (``read_actions``), before it is appended: what the writer
    appends, the reader accepts.

    Raises:
        CorpusError: the line it would make is one the reader refuses (the reason names the field).
    """
    _parse(json.loads(json.dumps(action.to_dict(), ensure_ascii=False)), Path(path), None)


def _parse(obj, path: Path, line: int | None) -> ReviewAction:
    if not isinstance(obj, dict):
        raise CorpusError(path, line, f"expected a JSON object, got {type(obj).__name__}")
    kind = obj.get("action")
    if kind not in (*ACTIONS, "revert"):
        raise CorpusError(path, line, f"'action' must be one of {', '.join((*ACTIONS, 'revert'))}, not {kind!r}")
    for name in ("id", "at", "by"):
        text_field(obj.get(name), name, path, line)
    if len(obj["by"]) > MAX_BY_CHARS or any(unicodedata.category(c) == "Cc" for c in obj["by"]):  # C0 and C1
        raise CorpusError(path, line, f"'by' is over {MAX_BY_CHARS} characters or holds control characters")
    if kind == "revert":
        if not isinstance(obj.get("reverts"), str):
            raise CorpusError(path, line, "a revert needs 'reverts': the id of the action it cancels")
        return ReviewAction(obj["id"], obj["at"], obj["by"], kind, reverts=obj["reverts"])
    questions = obj.get("questions")
    if not isinstance(questions, list) or len(questions) > MAX_QUESTIONS:
        raise CorpusError(path, line, f"'questions' must be a list of at most {MAX_QUESTIONS} strings")
    for i, question in enumerate(questions):  # what a corpus question must be: text, not empty, encodable
        text_field(question, f"questions[{i}]", path, line)
        if len(question) > MAX_QUESTION_CHARS or "\x00" in question:
            raise CorpusError(path, line, f"'questions[{i}]' is over {MAX_QUESTION_CHARS} characters or holds NUL")
    keys = obj.get("query_keys", [])
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise CorpusError(path, line, "'query_keys' must be a list of strings")
    faq_id = obj.get("faq_id")
    if kind != "dismiss" and not (isinstance(faq_id, str) and ID_PATTERN.match(faq_id)):
        raise CorpusError(path, line, f"a '{kind}' action needs 'faq_id', an entry id")
    if kind == "dismiss" and faq_id is not None:
        raise CorpusError(path, line, "a 'dismiss' action names no entry ('faq_id')")
    return ReviewAction(
        obj["id"],
        obj["at"],
        obj["by"],
        kind,
        faq_id,
        tuple(q.strip() for q in questions),
        tuple(keys),
        obj.get("index_id") if isinstance(obj.get("index_id"), str) else None,
        obj.get("note") if isinstance(obj.get("note"), str) else None,
    )


def read_actions(path: str | os.PathLike, problems: list[CorpusError] | None = None) -> list[ReviewAction]:
    """Every readable action of a reviewed file, in order (none when the file does not exist).

    A line the reader refuses (a hand edit, a line of an older version) is skipped with a warning naming the file
    and the line, and added to ``problems``: one bad line never stops the review loop or a build.

    Raises:
        CorpusError: the file itself cannot be read.
    """
    return _read(Path(path), problems)[0]


def _read(path: Path, problems: list[CorpusError] | None = None) -> tuple[list[ReviewAction], bytes | None]:
    """The actions of a reviewed file and the bytes they were read from (None: no file)."""
    try:
        raw = stable_read(path)
    except CorpusError as exc:
        if isinstance(exc.__cause__, FileNotFoundError):
            return [], None
        raise
    actions = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, nested too deep
                raise CorpusError(path, number, f"invalid JSON: {str(exc)[:200]}") from None
            actions.append(_parse(obj, path, number))
        except CorpusError as exc:
            if str(exc) not in _WARNED and len(_WARNED) < 10_000:  # once per process, not at every listing
                _WARNED.add(str(exc))
                log.warning("reviewed file: line skipped: %s", exc)
            if problems is not None:
                problems.append(exc)
    return actions, raw


#: The skipped lines already logged by this process.
_WARNED: set[str] = set()


def active_actions(actions: list[ReviewAction]) -> list[ReviewAction]:
    """The attach, not_answered and dismiss actions no later revert cancelled, in order."""
    reverted = {a.reverts for a in actions if a.action == "revert"}
    return [a for a in actions if a.action != "revert" and a.id not in reverted]


def decisions_lock(path: str | os.PathLike):
    """Hold the reviewed file's lock (a ``.lock`` file beside it) while reading, checking and appending, so that two
    reviewers (two workers) never both decide the same queries from the same reading."""
    return exclusive_lock(f"{path}.lock")


def append_action(path: str | os.PathLike, action: ReviewAction) -> None:
    """Append one action, whole or not at all, and on disk before returning.

    Under an exclusive lock (two reviewers never interleave a line); checked with the reader's rules first
    (``check_action``); a short write is completed, and a write that fails (a full disk, a file size limit) is rolled
    back to the file's previous size before the error is raised, so the file never keeps half a line.

    Raises:
        CorpusError: the reader would refuse the line. OSError: it could not be written (the file is as it was).
    """
    check_action(action, path)
    line = (json.dumps(action.to_dict(), ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":  # a hand edit left the last line open: close it first
            line = b"\n" + line
        try:
            written = 0
            while written < len(line):  # a short write (a disk filling up) is completed or fails below
                n = os.pwrite(fd, line[written:], size + written)
                if n <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                written += n
            os.fsync(fd)
        except BaseException:
            with contextlib.suppress(OSError):  # cutting a file never needs space
                os.ftruncate(fd, size)
                os.fsync(fd)
            raise
    finally:
        os.close(fd)


@dataclass
class MergeReport:
    """What merging a reviewed file did (the manifest's ``corpus.reviewed``)."""

    file: str | None = None
    sha256: str | None = None
    actions: int = 0
    alt_questions: int = 0
    not_questions: int = 0
    skipped: list[str] = field(default_factory=list)
    #: Lines of the file the reader refused (file:line: reason), left out of the build.
    unreadable: list[str] = field(default_factory=list)
    #: ``applied_key`` of the actions merged: what a build covers (``pending``).
    applied: str | None = None

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "sha256": self.sha256,
            "actions": self.actions,
            "alt_questions": self.alt_questions,
            "not_questions": self.not_questions,
            "skipped": self.skipped[:20],
            "unreadable": self.unreadable[:20],
            "applied": self.applied,
        }


def merge_actions(entries: list[FaqEntry], actions: list[ReviewAction]) -> tuple[list[FaqEntry], MergeReport]:
    """The entries with the active actions' questions added as ``alt_questions`` or ``not_questions``.

    A question already among the entry's own (its question or a corpus alt question, compared with ``fold``) is
    never made a known non-answer (the corpus wins; reported as skipped).
    """
    report = MergeReport(applied=applied_key(actions))
    by_id = {e.id: e for e in entries}
    alts: dict[str, dict[str, str]] = {e.id: {} for e in entries}  # folded -> as written, added by review
    nots: dict[str, dict[str, str]] = {e.id: {} for e in entries}
    for action in active_actions(actions):
        report.actions += 1
        if action.action == "dismiss":
            continue
        entry = by_id.get(action.faq_id)
        if entry is None:
            report.skipped.append(f"{action.id}: no entry {action.faq_id!r} in the corpus")
            continue
        own = {fold(q) for q in (entry.question, *entry.alt_questions)}
        corpus_nots = {fold(q) for q in entry.not_questions}
        for question in action.questions:
            folded = fold(question)
            if action.action == "attach":
                nots[entry.id].pop(folded, None)
                if folded not in own:
                    alts[entry.id][folded] = question
            elif folded in own:
                report.skipped.append(f"{action.id}: {question[:80]!r} is one of {entry.id!r}'s own questions")
            else:
                alts[entry.id].pop(folded, None)
                if folded not in corpus_nots:
                    nots[entry.id][folded] = question
    merged = []
    for entry in entries:
        added_alts, added_nots = list(alts[entry.id].values()), list(nots[entry.id].values())
        if added_alts or added_nots:
            removed_nots = set(alts[entry.id])  # attached: no longer a known non-answer, even one of the corpus
            entry = replace(
                entry,
                alt_questions=(*entry.alt_questions, *added_alts),
                not_questions=tuple([q for q in entry.not_questions if fold(q) not in removed_nots] + added_nots),
            )
        report.alt_questions += len(added_alts)
        report.not_questions += len(added_nots)
        merged.append(entry)
    return merged, report


def apply_reviewed(entries: list[FaqEntry], corpus: str | os.PathLike) -> tuple[list[FaqEntry], MergeReport]:
    """Merge the corpus's reviewed file, if it has one, into its entries (what a build indexes); its unreadable lines
    are left out and listed in the report.

    Raises:
        CorpusError: the reviewed file cannot be read at all.
    """
    path = reviewed_path(corpus)
    problems: list[CorpusError] = []
    actions, raw = _read(path, problems)
    merged, report = merge_actions(entries, actions)
    report.unreadable = [str(p) for p in problems]
    if raw is not None:
        report.file, report.sha256 = path.name, hashlib.sha256(raw).hexdigest()
    return merged, report


def applied_key(actions: list[ReviewAction]) -> str:
    """What of the reviewed file changes an index: a digest of the attach and not_answered actions in force (a
    dismissal, or a revert of one, changes nothing in the index and needs no build)."""
    ids = [a.id for a in active_actions(actions) if a.action != "dismiss"]
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def pending(actions: list[ReviewAction], reviewed: dict | None) -> bool:
    """Whether the served build (its manifest's ``corpus.reviewed``) misses decisions of the reviewed file."""
    reviewed = reviewed or {}
    if reviewed.get("applied") is not None:
        return reviewed["applied"] != applied_key(actions)
    # A build from before ``applied`` was recorded: built again once if any decision changes the index.
    return any(a.action != "dismiss" for a in active_actions(actions))


def reviewed_keys(actions: list[ReviewAction], kinds: tuple[str, ...] = ACTIONS) -> dict[str, ReviewAction]:
    """The query keys that active actions of these kinds decided, each with its (latest) action."""
    out = {}
    for action in active_actions(actions):
        if action.action in kinds:
            for key in action.query_keys:
                out[key] = action
    return out
