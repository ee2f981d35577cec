"""Changing the corpus file for the entries API: put, delete or import entries, set the synonyms; whole or not at all.

Every change follows the rules the reviewed file follows (CONVENTIONS 20): under the corpus's lock (``<corpus>.lock``:
writers of every worker and process take turns), the file is read once; the change is made on its lines (the other
lines stay byte for byte, a replaced entry keeps its place, a new one goes last, the header stays first); the new
text is written to a temporary file beside it, read back with the corpus reader's own checks (``read_corpus``), and
renamed over the corpus only if the corpus still has the bytes read at the start: a crash leaves the old file or the
new one, never half of either, and a hand edit made meanwhile is refused (``CorpusChanged``), never overwritten.
A caller that read the corpus earlier (``GET /admin/entries``) sends the checksum it saw (``If-Match``): a corpus
that changed since is refused the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .corpus import CorpusError, parse_entry, read_corpus
from .files import exclusive_lock
from .synonyms import SynonymError, Synonyms

#: Entries one import may hold.
MAX_IMPORT = 10_000


class EditError(ValueError):
    """A change refused; ``kind`` says which (``invalid_entry``, ``invalid_synonyms``, ``unknown_entry``,
    ``last_entry``, ``stale`` (not the checksum the caller read), ``corpus_changed`` (a hand edit meanwhile),
    ``invalid_corpus``), the message says why."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind, self.message = kind, message


@dataclass(frozen=True)
class Edit:
    """What a change did: the corpus's checksum before and after, the ids put (created or replaced) and removed."""

    before: str
    after: str
    created: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()


def checksum(data: bytes) -> str:
    """The corpus's checksum as the index's manifest records it (SHA-256 of the file's bytes)."""
    return hashlib.sha256(data).hexdigest()


def corpus_lock(corpus: str | os.PathLike):
    """Hold the corpus's writer lock (a ``.lock`` file beside it): one writer at a time, in any process."""
    return exclusive_lock(f"{corpus}.lock")


class CorpusFile:
    """The corpus file of one FAQ, as the entries API reads and changes it."""

    def __init__(self, path: str | os.PathLike):
        # The file itself, where a link points: the rename replaces it, not the link (which would then stop naming it).
        self.path = Path(path).resolve()

    # ---- reading ----

    def read(self) -> tuple[bytes, list[str]]:
        """The file's bytes and its lines (each with its line break)."""
        data = self.path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EditError(
                "invalid_corpus", f"the corpus file is not valid UTF-8 (byte {exc.start + 1}): fix it by hand first"
            ) from None
        # On "\n" only, as the reader splits (a JSON string may hold U+2028, which str.splitlines would cut at).
        lines = [part + "\n" for part in text.split("\n")]
        lines[-1] = lines[-1][:-1]
        return data, [line for line in lines if line]

    def entries(self) -> tuple[str, list[dict]]:
        """The checksum and the entries as written in the file (every field, in the file's order).

        Raises:
            EditError ``invalid_corpus``: the corpus reader refuses the file (a hand edit broke it).
        """
        data, lines = self.read()
        self._check(self.path)
        return checksum(data), [obj for _, obj in _entry_lines(lines)]

    def synonyms(self) -> tuple[str, Synonyms]:
        """The checksum and the header's synonyms (empty when the corpus has none)."""
        data, _ = self.read()
        identity = self._check(self.path)
        return checksum(data), identity.synonyms

    # ---- changing ----

    def put(
        self, entries: list[dict], expected: str | None = None, where: list[str] | None = None, on_written=None
    ) -> Edit:
        """Create or replace entries by id (an import when several); ``expected``: the checksum the caller saw;
        ``where``: how to name each entry in a refusal (an import's ``line 3``; default ``entry 3``).

        Raises:
            EditError: an entry the corpus reader refuses (``invalid_entry``, naming it), or the file changed.
        """
        if not entries:
            raise EditError("invalid_entry", "no entry to write")
        if len(entries) > MAX_IMPORT:
            raise EditError("invalid_entry", f"at most {MAX_IMPORT} entries per import")
        parsed = {}
        for n, obj in enumerate(entries, start=1):
            where_n = where[n - 1] if where else f"entry {n}" if len(entries) > 1 else "the entry"
            if isinstance(obj, dict) and "faq" in obj and "id" not in obj:
                raise EditError(
                    "invalid_entry",
                    f'{where_n} is a corpus header ({{"faq": …}}): an import holds entries only (the header\'s '
                    "synonyms change with PUT /admin/synonyms)",
                )
            try:
                entry = parse_entry(obj, where_n, None)
            except CorpusError as exc:
                raise EditError("invalid_entry", f"{where_n}: {exc.reason}") from None
            _writable(obj, where_n)
            if entry.id in parsed:
                raise EditError("invalid_entry", f"{where_n}: id {entry.id!r} is given twice")
            parsed[entry.id] = obj

        def change(lines):
            out, created, replaced, unchanged = [], [], [], []
            for _, line, obj in _lines(lines):
                faq_id = _id(obj)
                if faq_id in parsed:
                    new = parsed[faq_id]
                    same = _canonical(new) == _canonical(obj)  # type-strict: true is not 1, 1.0 is not 1
                    (unchanged if same else replaced).append(faq_id)
                    out.append(line if same else _line(new, line))
                else:
                    out.append(line)
            have = {_id(obj) for _, obj in _entry_lines(lines)}
            style = lines[0] if lines else "\n"  # new lines end as the file's first does (CRLF or LF)
            for faq_id, obj in parsed.items():
                if faq_id not in have:
                    if out and not out[-1].endswith("\n"):  # a hand edit left the last line open
                        out[-1] += "\r\n" if style.endswith("\r\n") else "\n"
                    out.append(_line(obj, style))
                    created.append(faq_id)
            return out, {"created": tuple(created), "replaced": tuple(replaced), "unchanged": tuple(unchanged)}

        return self._edit(change, expected, on_written)

    def delete(self, faq_id: str, expected: str | None = None, on_written=None) -> Edit:
        """Remove the entry ``faq_id``.

        Raises:
            EditError: ``unknown_entry`` (no such entry), ``last_entry`` (a corpus keeps at least one), or the file
                changed.
        """

        def change(lines):
            entries = [_id(obj) for _, obj in _entry_lines(lines)]
            if faq_id not in entries:
                raise EditError("unknown_entry", f"the corpus has no entry {faq_id!r}")
            if len(entries) == 1:
                raise EditError("last_entry", f"{faq_id!r} is the corpus's last entry: a corpus keeps at least one")
            out = [line for _, line, obj in _lines(lines) if obj is None or _id(obj) != faq_id]
            return out, {"removed": (faq_id,)}

        return self._edit(change, expected, on_written)

    def set_synonyms(self, value, expected: str | None = None, on_written=None) -> Edit:
        """Replace the header's synonyms (``{}``: none); a corpus without a header gets one.

        Raises:
            EditError: ``invalid_synonyms`` (``Synonyms.parse``'s reason), or the file changed.
        """
        try:
            synonyms = Synonyms.parse(value)
        except SynonymError as exc:
            raise EditError("invalid_synonyms", str(exc)) from None

        def change(lines):
            first = next((i for i, line in enumerate(lines) if line.strip()), None)
            header = json.loads(lines[first].lstrip("\ufeff")) if first is not None else None
            if isinstance(header, dict) and set(header) == {"faq"}:
                faq = dict(header["faq"])
                if synonyms:
                    faq["synonyms"] = synonyms.to_dict()
                else:
                    faq.pop("synonyms", None)
                lines = [*lines[:first], _line({"faq": faq}, lines[first]), *lines[first + 1 :]]
            elif synonyms:
                lines = [_line({"faq": {"synonyms": synonyms.to_dict()}}), *lines]
            return lines, {}

        return self._edit(change, expected, on_written)

    def _edit(self, change, expected: str | None, on_written=None) -> Edit:
        """Make ``change`` under the lock; ``on_written(edit)`` is called there too, once the new text is checked and
        before it replaces the file (the record of the change for the build: a record that fails writes nothing, and
        one whose write then fails names a checksum no file has, which the build ignores)."""
        with corpus_lock(self.path):
            data, lines = self.read()
            before = checksum(data)
            if expected is not None and expected != before:
                raise EditError(
                    "stale",
                    f"the corpus changed since it was read (its checksum is {before[:12]}…, not {expected[:12]}…): "
                    "read it again (GET /admin/entries) and redo the change",
                )
            self._check(self.path)  # a corpus a hand edit broke is not changed further: its owner fixes it first
            new_lines, what = change(lines)
            new = "".join(new_lines).encode("utf-8")
            if new == data:
                return Edit(before, before, **{"unchanged": (), **what})
            done = Edit(before, checksum(new), **what)
            self._replace(new, before, lambda: on_written(done) if on_written is not None else None)
            return done

    def _replace(self, new: bytes, before: str, ready=lambda: None) -> None:
        """Write ``new`` beside the corpus, check it with the reader, call ``ready()``, and rename it over the corpus
        if the corpus still has the checksum ``before``."""
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(new)
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(OSError):
                os.chmod(tmp, self.path.stat().st_mode & 0o777)
            try:
                read_corpus(tmp)  # what is written is what the build reads: its own checks, on the very bytes
            except CorpusError as exc:
                reason = f"line {exc.line}: {exc.reason}" if exc.line else exc.reason
                raise EditError("invalid_entry", f"the corpus would not be valid: {reason}") from None
            ready()
            if checksum(self.path.read_bytes()) != before:
                raise EditError(
                    "corpus_changed", "the corpus file was changed on disk during this change (a hand edit?): redo it"
                )
            os.replace(tmp, self.path)
            tmp = None
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    @staticmethod
    def _check(path: Path):
        try:
            identity, _ = read_corpus(path)
        except CorpusError as exc:
            at = f"line {exc.line}: " if exc.line else ""
            raise EditError(
                "invalid_corpus", f"the corpus file does not read ({path.name}, {at}{exc.reason}): fix it by hand first"
            ) from None
        return identity


def _lines(lines: list[str]):
    """``(position, line, entry object or None)`` for every line (None: the header, a blank line)."""
    for i, line in enumerate(lines):
        obj = None
        if line.strip():
            value = json.loads(line.lstrip("\ufeff"))
            if isinstance(value, dict) and not ("faq" in value and "id" not in value):  # the reader's header rule
                obj = value
        yield i, line, obj


def _id(obj: dict | None) -> str | None:
    """An entry's id as the corpus reader takes it (an integer id is its text: ``7`` is ``"7"``)."""
    if obj is None or "id" not in obj or isinstance(obj["id"], bool):
        return None
    return str(obj["id"])


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False)


def _writable(obj: dict, where: str) -> None:
    """EditError unless ``obj`` can be written as a corpus line (valid Unicode, not nested past JSON's limits)."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise EditError("invalid_entry", f"{where}: holds text that is not valid Unicode (a lone surrogate)") from None
    except (RecursionError, ValueError):
        raise EditError("invalid_entry", f"{where}: nested too deeply (or not JSON) to be written") from None


def _entry_lines(lines: list[str]):
    return [(i, obj) for i, _, obj in _lines(lines) if obj is not None]


def _line(obj: dict, like: str = "\n") -> str:
    """One corpus line for ``obj``, in the file's style (one JSON object, no ASCII escaping) and ending as ``like``."""
    ending = "\r\n" if like.endswith("\r\n") else "\n"
    return json.dumps(obj, ensure_ascii=False) + ending
