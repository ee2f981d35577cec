"""Reading an FAQ corpus (JSON Lines), splitting its entries into passages, and listing each entry's vectors.

Format, one JSON object per line (blank lines are ignored):
    required: ``id`` (string, no spaces or slashes), ``question`` (non-empty string), ``answer`` (non-empty string)
    optional: ``source`` (string), ``tags`` (list of strings), ``alt_questions`` (list of strings: other ways users
    ask what this entry answers), ``not_questions`` (list of strings: questions users asked that this entry does
    *not* answer, known non-answers); any other field is kept and returned by ``GET /faq/<id>``.
An optional first line ``{"faq": {"name", "language", "examples", "support", "synonyms"}}`` gives the FAQ's
identity (``FaqIdentity``; ``synonyms`` as ``service/synonyms.py`` describes them): it travels with the index to
the search page, ``/health``, OpenAPI and the MCP server.
In ``answer``, paragraphs are separated by a blank line and a line starting with ``## `` is a sub-heading: each
sub-section becomes its own passage, whose ``section`` is the heading. The question, each alternative question and
each known non-answer get a vector of their own (``entry_rows``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from .files import sha256_file
from .synonyms import SynonymError, Synonyms

REQUIRED = ("id", "question", "answer")
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")  # \Z: "$" would let a final "\n" through
HEADING = re.compile(r"^##\s+(.+?)\s*$")
#: Sections longer than this many characters are cut at paragraph boundaries (~400 tokens of French).
MAX_PASSAGE_CHARS = 1500


class CorpusError(ValueError):
    """A corpus file cannot be used; names the file, the line (1-based, if any) and the reason.

    ``others`` are the further errors found in the same file (every bad line is reported at once, up to
    ``MAX_REPORTED_ERRORS``), each a ``CorpusError`` itself; the message lists them one per line.
    """

    def __init__(
        self, path: str | os.PathLike, line: int | None, reason: str, others: list | None = None, unreported: int = 0
    ):
        self.path, self.line, self.reason = str(path), line, reason
        self.others, self.unreported = list(others or []), unreported
        where = f"{path}:{line}" if line else str(path)
        lines = [f"{where}: {reason}", *(str(e) for e in self.others)]
        if unreported:
            lines.append(f"… and {unreported} more errors")
        super().__init__("\n".join(lines))


#: Errors of one corpus listed in one report; the rest are counted.
MAX_REPORTED_ERRORS = 20


@dataclass(frozen=True)
class FaqEntry:
    """One FAQ entry as written in the corpus."""

    id: str
    question: str
    answer: str
    source: str | None = None
    tags: tuple[str, ...] = ()
    alt_questions: tuple[str, ...] = ()
    not_questions: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)
    #: Where to go further: ``({"label", "url"}, …)``, http and https only (``parse_links``).
    links: tuple[dict, ...] = ()

    def to_dict(self) -> dict:
        """The entry as a JSON-ready dict (the shape of the corpus line)."""
        out = {"id": self.id, "question": self.question, "answer": self.answer}
        if self.source is not None:
            out["source"] = self.source
        out["tags"] = list(self.tags)
        if self.alt_questions:
            out["alt_questions"] = list(self.alt_questions)
        if self.not_questions:
            out["not_questions"] = list(self.not_questions)
        if self.links:
            out["links"] = [dict(link) for link in self.links]
        out.update(self.extra)
        return out

    def all_links(self) -> list[dict]:
        """Its ``links``, then the markdown links of its answer (``[label](https://…)``), each URL once."""
        out, seen = [], set()
        for link in (*self.links, *answer_links(self.answer)):
            if link["url"] not in seen:
                seen.add(link["url"])
                out.append(dict(link))
        return out


#: Most links of one entry.
MAX_LINKS = 20
#: A markdown link in an answer: ``[label](http…)``.
MARKDOWN_LINK = re.compile(r"\[([^\[\]\n]{1,200})\]\((https?://[^\s()<>\"]{1,2000})\)")


def safe_url(url: str) -> bool:
    """Whether a link may be shown as one: http or https, a host, no spaces or control characters."""
    from urllib.parse import urlsplit

    if not isinstance(url, str) or len(url) > 2000 or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def answer_links(answer: str) -> list[dict]:
    """The markdown links of an answer whose URL is safe (``safe_url``), in order."""
    return [{"label": m.group(1).strip(), "url": m.group(2)} for m in MARKDOWN_LINK.finditer(answer)
            if m.group(1).strip() and safe_url(m.group(2))]  # fmt: skip


def parse_links(value, path, line: int) -> tuple[dict, ...]:
    """An entry's ``links``: a list of ``{"label", "url"}``, http(s) URLs only.

    Raises:
        CorpusError: not such a list, a label empty, a URL of another scheme (``javascript:``, ``data:``…), too many.
    """
    if not isinstance(value, list):
        raise CorpusError(path, line, 'field \'links\' must be a list of {"label", "url"} objects')
    if len(value) > MAX_LINKS:
        raise CorpusError(path, line, f"field 'links' holds {len(value)} links, more than {MAX_LINKS}")
    out = []
    for i, link in enumerate(value):
        if not isinstance(link, dict) or set(link) != {"label", "url"}:
            raise CorpusError(path, line, f"'links[{i}]' must be an object with exactly 'label' and 'url'")
        label = text_field(link["label"], f"links[{i}].label", path, line).strip()
        if len(label) > 200:
            raise CorpusError(path, line, f"'links[{i}].label' is longer than 200 characters")
        if not safe_url(link["url"]):
            raise CorpusError(path, line, f"'links[{i}].url' must be an http or https URL with a host, no spaces")
        out.append({"label": label, "url": link["url"]})
    return tuple(out)


#: Characters that make a text look empty: white space, and zero-width and format characters.
INVISIBLE = " \t\n\r\f\v\u00a0\u200b\u200c\u200d\u2060\ufeff"
#: Limits of the identity header's fields (characters, and examples).
MAX_NAME_CHARS, MAX_SUPPORT_CHARS, MAX_EXAMPLES, MAX_EXAMPLE_CHARS = 100, 500, 10, 200
LANGUAGE = re.compile(r"^[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*$")  # a BCP 47 tag: fr, fr-CA, fr-Latn-FR


@dataclass(frozen=True)
class FaqIdentity:
    """Who the FAQ belongs to: its name, language, example questions and where to turn when it has no answer."""

    name: str | None = None
    language: str = "fr"
    examples: tuple[str, ...] = ()
    support: str | None = None
    synonyms: Synonyms = field(default_factory=Synonyms)

    def to_dict(self) -> dict:
        """JSON-ready dict (the manifest's ``faq`` and the header's value; ``synonyms`` only when there are some)."""
        out = {"name": self.name, "language": self.language, "examples": list(self.examples), "support": self.support}
        if self.synonyms:
            out["synonyms"] = self.synonyms.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict) -> FaqIdentity:
        """The identity from a manifest's ``faq`` object, checked as the corpus header is (a hand-edited manifest).

        Raises:
            ValueError: what is wrong, as the corpus header's check says it.
        """
        if not isinstance(data, dict):
            raise ValueError(f"'faq' must be an object, not {type(data).__name__}")
        given = {k: v for k, v in data.items() if v is not None}
        if "examples" in given and given["examples"] == []:
            del given["examples"]
        try:
            return parse_identity(given, "manifest", 0)
        except CorpusError as exc:
            raise ValueError(exc.reason) from None


def parse_identity(obj, path: str | os.PathLike, line: int) -> FaqIdentity:
    """Validate the corpus's identity header (the value of its ``faq`` key).

    Raises:
        CorpusError: not an object, an unknown key, a field of the wrong type, empty or over its limit.
    """
    if not isinstance(obj, dict):
        raise CorpusError(path, line, f"'faq' must be an object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - {"name", "language", "examples", "support", "synonyms"})
    if unknown:
        raise CorpusError(
            path, line, f"unknown field(s) {unknown} in 'faq'; known: name, language, examples, support, synonyms"
        )
    name = text_field(obj["name"], "faq.name", path, line).strip() if "name" in obj else None
    support = text_field(obj["support"], "faq.support", path, line).strip() if "support" in obj else None
    language = text_field(obj.get("language", "fr"), "faq.language", path, line).strip()
    examples = tuple(e.strip() for e in _text_list(obj.get("examples", []), "faq.examples", path, line))
    if not LANGUAGE.match(language):
        raise CorpusError(path, line, f"'faq.language' must be a tag such as 'fr' or 'fr-CA', not {language!r}")
    for field_name, value, limit in (("name", name, MAX_NAME_CHARS), ("support", support, MAX_SUPPORT_CHARS)):
        if value is not None and len(value) > limit:
            raise CorpusError(path, line, f"'faq.{field_name}' is longer than {limit} characters")
    if len(examples) > MAX_EXAMPLES or any(len(e) > MAX_EXAMPLE_CHARS for e in examples):
        raise CorpusError(
            path, line, f"'faq.examples' holds at most {MAX_EXAMPLES} questions of {MAX_EXAMPLE_CHARS} characters"
        )
    try:
        synonyms = Synonyms.parse(obj["synonyms"]) if "synonyms" in obj else Synonyms()
    except SynonymError as exc:
        raise CorpusError(path, line, f"'faq.synonyms': {exc}") from None
    return FaqIdentity(name, language, examples, support, synonyms)


@dataclass(frozen=True)
class Passage:
    """A unit of retrieval: one section (or part of one) of an entry's answer."""

    passage_id: str
    faq_id: str
    question: str
    section: str | None
    text: str

    @property
    def embed_text(self) -> str:
        """What gets embedded: the question gives the passage its topic, then the heading and the text."""
        parts = [self.question]
        if self.section:
            parts.append(self.section)
        parts.append(self.text)
        return "\n".join(parts)

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {
            "passage_id": self.passage_id,
            "faq_id": self.faq_id,
            "question": self.question,
            "section": self.section,
            "text": self.text,
        }


#: What a vector of an entry represents, and the prompt it is embedded with. A ``not_question`` (a question the
#: entry does not answer) is never a match of its entry: the answer check reads it (``search.engine``).
ROW_KINDS = {"question": "query", "alt_question": "query", "not_question": "query", "passage": "passage"}


@dataclass(frozen=True)
class Row:
    """One vector of an entry: its question, an alternative question, a known non-answer, or an answer passage.

    ``ref`` is the question's text for question kinds and the ``passage_id`` for passages.
    """

    faq_id: str
    kind: str
    ref: str

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {"faq_id": self.faq_id, "kind": self.kind, "ref": self.ref}


#: What a passage's vector embeds, as the manifest describes it (``Passage.embed_text``).
PASSAGE_TEXT = "question\\n[section heading\\n]section text"


def entry_rows(entries: list[FaqEntry], passages: list[Passage]) -> tuple[list[Row], list[str]]:
    """The vectors to index for each entry, in entry order, and the text to embed for each.

    An entry gets one row for its question and one per alternative question (embedded like a user's question,
    with the query prompt), one per known non-answer, then one row per answer passage (question, heading and text,
    ``Passage.embed_text``, with the passage prompt).
    """
    by_entry: dict[str, list[Passage]] = {}
    for passage in passages:
        by_entry.setdefault(passage.faq_id, []).append(passage)
    rows: list[Row] = []
    texts: list[str] = []
    for entry in entries:
        rows.append(Row(entry.id, "question", entry.question))
        texts.append(entry.question)
        for alt in entry.alt_questions:
            rows.append(Row(entry.id, "alt_question", alt))
            texts.append(alt)
        for other in entry.not_questions:
            rows.append(Row(entry.id, "not_question", other))
            texts.append(other)
        for passage in by_entry.get(entry.id, []):
            rows.append(Row(entry.id, "passage", passage.passage_id))
            texts.append(passage.embed_text)
    return rows, texts


def lexical_text(entry: FaqEntry) -> str:
    """What the lexical leg indexes for an entry: its question, alternative questions and answer (not its known
    non-answers)."""
    return "\n".join([entry.question, *entry.alt_questions, entry.answer])


def text_field(value, name: str, path, line: int) -> str:
    """``value`` if it is a string with something visible, encodable in UTF-8; else CorpusError naming the field."""
    if not isinstance(value, str):
        raise CorpusError(path, line, f"field '{name}' must be a string, got {type(value).__name__}")
    if not value.strip() or not value.strip(INVISIBLE):
        raise CorpusError(path, line, f"field '{name}' is empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # "\ud800" in JSON: a lone surrogate, which no UTF-8 file or response can carry
        raise CorpusError(path, line, f"field '{name}' holds a lone surrogate (\\ud800-\\udfff)") from None
    return value


def _text_list(value, name: str, path, line: int) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise CorpusError(path, line, f"field '{name}' must be a list of strings")
    return tuple(text_field(v, f"{name}[{i}]", path, line) for i, v in enumerate(value))


def parse_entry(obj, path: str | os.PathLike, line: int) -> FaqEntry:
    """Validate one decoded corpus line and return it as an entry.

    Raises:
        CorpusError: a required field is missing, empty or of the wrong type, or the id is malformed.
    """
    if not isinstance(obj, dict):
        raise CorpusError(path, line, f"expected a JSON object, got {type(obj).__name__}")
    for name in REQUIRED:
        if name not in obj:
            raise CorpusError(path, line, f"missing required field '{name}'")
    raw_id = obj["id"]
    if isinstance(raw_id, int) and not isinstance(raw_id, bool):
        raw_id = str(raw_id)
    entry_id = text_field(raw_id, "id", path, line)
    if not ID_PATTERN.match(entry_id):
        raise CorpusError(
            path,
            line,
            f"id {entry_id!r} must be 1-128 characters among letters, digits, "
            "'.', '_', ':', '-', starting with a letter or digit",
        )
    source = obj.get("source")
    if source is not None:
        source = text_field(source, "source", path, line)
    known = {*REQUIRED, "source", "tags", "alt_questions", "not_questions", "links"}
    question = text_field(obj["question"], "question", path, line).strip()
    alt_questions = _text_list(obj.get("alt_questions", []), "alt_questions", path, line)
    not_questions = tuple(q.strip() for q in _text_list(obj.get("not_questions", []), "not_questions", path, line))
    own = {q.strip().casefold() for q in (question, *alt_questions)}
    for i, other in enumerate(not_questions):
        if other.casefold() in own:
            raise CorpusError(
                path, line, f"'not_questions[{i}]' is also this entry's question or one of its alt_questions"
            )
    return FaqEntry(
        id=entry_id,
        question=question,
        answer=text_field(obj["answer"], "answer", path, line).strip(),
        source=source,
        tags=_text_list(obj.get("tags", []), "tags", path, line),
        alt_questions=alt_questions,
        not_questions=not_questions,
        extra={k: v for k, v in obj.items() if k not in known},
        links=parse_links(obj["links"], path, line) if "links" in obj else (),
    )


#: Times a file is read again when it changed while it was read.
READ_ATTEMPTS = 5


def stable_read(path: str | os.PathLike, settle: float = 0.0, what: str = "file") -> bytes:
    """A file's bytes as they were at one moment: its size, time and inode the same before and after the read (an
    editor or a copy writing it meanwhile makes it read again, up to ``READ_ATTEMPTS`` times).

    Args:
        settle: seconds the file must have been left alone before it is read (waited for, up to ten times as long):
            a file written a moment ago may be half-way through being rewritten.
    Raises:
        CorpusError: unreadable (its cause is the OSError), or still changing after every attempt.
    """
    path = Path(path)
    waited_until = time.time() + 10 * settle
    for _ in range(READ_ATTEMPTS):
        try:
            before = os.stat(path)
            if settle and time.time() - before.st_mtime < settle and time.time() < waited_until:
                time.sleep(settle)
                continue
            raw = path.read_bytes()
            after = os.stat(path)
        except OSError as exc:
            raise CorpusError(path, None, f"cannot read {what}: {exc.strerror or exc}") from exc
        same = (before.st_ino, before.st_size, before.st_mtime_ns) == (after.st_ino, after.st_size, after.st_mtime_ns)
        if same and len(raw) == after.st_size:
            return raw
        time.sleep(0.1)
    raise CorpusError(
        path,
        None,
        f"the {what} kept changing while it was read (an editor or a copy writing it?): try again once it is written",
    )


@dataclass(frozen=True)
class CorpusSnapshot:
    """A corpus as read at one moment: its identity, its entries and the SHA-256 of the very bytes they came from."""

    identity: FaqIdentity
    entries: list[FaqEntry]
    sha256: str


def load_corpus(path: str | os.PathLike) -> list[FaqEntry]:
    """Read and validate a JSONL corpus: its entries (``read_corpus`` also gives its identity header).

    Raises:
        CorpusError: unreadable file, bad UTF-8 or JSON, a bad entry, a duplicate id, or no entry at all.
    """
    return read_corpus(path)[1]


def read_corpus(path: str | os.PathLike) -> tuple[FaqIdentity, list[FaqEntry]]:
    """Read and validate a JSONL corpus: its identity (the optional ``{"faq": …}`` first line) and its entries.

    Raises:
        CorpusError: unreadable file, bad UTF-8 or JSON, a bad header or entry, a header after the first line,
            a duplicate id, or no entry at all.
    """
    snapshot = read_corpus_snapshot(path)
    return snapshot.identity, snapshot.entries


def read_corpus_snapshot(path: str | os.PathLike, settle: float = 0.0) -> CorpusSnapshot:
    """``read_corpus`` from one stable read of the file (``stable_read``), with the checksum of what was read.

    Raises:
        CorpusError: as ``read_corpus``, or the file kept changing while it was read.
    """
    path = Path(path)
    raw = stable_read(path, settle, what="corpus")
    entries: list[FaqEntry] = []
    identity = FaqIdentity()
    first_line = True  # the identity header may only be the first non-blank line
    seen: dict[str, int] = {}
    errors: list[CorpusError] = []
    for number, line_bytes in enumerate(raw.split(b"\n"), start=1):
        if number == 1 and line_bytes.startswith(b"\xef\xbb\xbf"):
            line_bytes = line_bytes[3:]
        try:
            entry = _entry_of_line(line_bytes, path, number)
            if entry is None:
                continue
            was_first, first_line = first_line, False
            if isinstance(entry, FaqIdentity):
                if not was_first:
                    raise CorpusError(path, number, "the 'faq' header must be the file's first line")
                identity = entry
                continue
            if entry.id in seen:
                raise CorpusError(path, number, f"duplicate id {entry.id!r} (first on line {seen[entry.id]})")
        except CorpusError as exc:  # every bad line is reported, not only the first
            errors.append(exc)
            continue
        seen[entry.id] = number
        entries.append(entry)
    if errors:
        first, rest = errors[0], errors[1:MAX_REPORTED_ERRORS]
        raise CorpusError(first.path, first.line, first.reason, rest, max(0, len(errors) - MAX_REPORTED_ERRORS))
    if not entries:
        raise CorpusError(path, None, "the corpus has no entry")
    return CorpusSnapshot(identity, entries, hashlib.sha256(raw).hexdigest())


def _entry_of_line(line_bytes: bytes, path: Path, number: int) -> FaqEntry | FaqIdentity | None:
    """The entry (or identity header) on one line of a corpus, None for a blank line; CorpusError for a bad one."""
    try:
        line = line_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(path, number, f"not valid UTF-8 (byte {exc.start + 1})") from exc
    if not line.strip():
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CorpusError(path, number, f"invalid JSON: {exc.msg} (column {exc.colno})") from exc
    if isinstance(obj, dict) and "faq" in obj and "id" not in obj:  # an entry may have a "faq" field of its own
        if set(obj) != {"faq"}:
            raise CorpusError(path, number, "the 'faq' header must be alone on its line: {\"faq\": {…}}")
        return parse_identity(obj["faq"], path, number)
    return parse_entry(obj, path, number)


def corpus_checksum(path: str | os.PathLike) -> str:
    """SHA-256 of the corpus file's bytes."""
    return sha256_file(path)


def _sections(answer: str) -> list[tuple[str | None, list[str]]]:
    """Split an answer into (heading, paragraphs) pairs; text before the first heading has no heading."""
    sections: list[tuple[str | None, list[str]]] = [(None, [])]
    for para in re.split(r"\n\s*\n", answer):
        para = para.strip()
        if not para:
            continue
        first, _, rest = para.partition("\n")
        match = HEADING.match(first)
        if match:
            sections.append((match.group(1), []))
            para = rest.strip()
            if not para:
                continue
        sections[-1][1].append(para)
    return [(h, paras) for h, paras in sections if h is not None or paras]


def _chunks(paragraphs: list[str], max_chars: int) -> list[str]:
    """Group paragraphs into chunks of at most ``max_chars`` (a longer single paragraph stays whole)."""
    chunks: list[str] = []
    current: list[str] = []
    for para in paragraphs:
        if current and len("\n\n".join([*current, para])) > max_chars:
            chunks.append("\n\n".join(current))
            current = []
        current.append(para)
    if current:
        chunks.append("\n\n".join(current))
    return chunks


def split_passages(entries: list[FaqEntry], max_chars: int = MAX_PASSAGE_CHARS) -> list[Passage]:
    """One passage per answer section (a long section is cut at paragraph boundaries).

    Passage ids are ``<faq_id>#<n>``, numbered from 1 in reading order.
    """
    passages: list[Passage] = []
    for entry in entries:
        n = 0
        for heading, paragraphs in _sections(entry.answer):
            # A heading with no text under it is still a passage: the heading is its text.
            for chunk in _chunks(paragraphs, max_chars) or [heading or ""]:
                n += 1
                passages.append(Passage(f"{entry.id}#{n}", entry.id, entry.question, heading, chunk))
    return passages
