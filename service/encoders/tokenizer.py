"""The model's tokenizer at run time: a SentencePiece model when the export converted one, else ``tokenizer.json``.

multilingual-e5's ``tokenizer.json`` (250k Unigram pieces) takes about 280 MB in each process once Hugging Face
``tokenizers`` has loaded it. The same pieces and scores as a SentencePiece model (``onnx/tokenizer.model``, 5 MB,
written at set-up by ``tokenizer_export.convert_tokenizer``) take 28 MB and encode faster; the normaliser of
``tokenizer.json`` (a sequence of Unicode normalisations and replacements) runs here in Python first, and the ids are
the same (the conversion checks them). ``onnx/tokenizer.model.json`` says what was converted: the checksum of
``tokenizer.json``, the normaliser, the special ids, and the model file's size and SHA-256, checked when loading.

An export without that file (older, or a tokenizer the conversion does not support) is served with ``tokenizer.json``
as before; a ``tokenizer.json`` changed since the conversion too, with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import re
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import ModelUnavailable

log = logging.getLogger(__name__)

ONNX_DIR = "onnx"
PIECES_FILE = "tokenizer.model"
PIECES_META = "tokenizer.model.json"
#: The metaspace character: what SentencePiece and the Metaspace pre-tokenizer write for a space.
METASPACE = "\u2581"

#: Tokenizers loaded before the server forks its workers (``preload_tokenizer``), by ``_file_key``.
_PRELOADED: dict[tuple, object] = {}


def _file_key(path: Path) -> tuple:
    """A file as it is now: its path, size and modification time (a changed file is another key)."""
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


#: What a ``Replace`` regex of ``tokenizer.json`` may hold to be run by Python's ``re`` with the same meaning:
#: character classes of literal characters, ranges and ``\x{..}`` escapes, and simple repetitions.
_CLASS = r"\[(?:\\x\{[0-9a-fA-F]+\}|[^\\\[\]&~])+\]"
_PORTABLE_REGEX = re.compile(rf"^(?:{_CLASS}|\\x\{{[0-9a-fA-F]+\}}|[^\\\[\](){{}}|^$.*+?]|\{{\d+(?:,\d*)?\}}|[*+?])+$")


def _rust_regex(pattern: str) -> re.Pattern:
    """A ``tokenizers`` (Rust) regex compiled by Python's ``re``: ``\\x{1F}`` becomes ``\\U0000001f``.

    Raises:
        ValueError: syntax outside ``_PORTABLE_REGEX``, whose meaning could differ between the two engines.
    """
    if not _PORTABLE_REGEX.match(pattern):
        raise ValueError(f"regex {pattern!r} is not one whose meaning this module can keep")
    try:
        return re.compile(re.sub(r"\\x\{([0-9a-fA-F]+)\}", lambda m: f"\\U{int(m.group(1), 16):08x}", pattern))
    except re.error as exc:
        raise ValueError(f"regex {pattern!r}: {exc}") from None


def normaliser(spec: dict | None) -> Callable[[str], str]:
    """The text normaliser a ``tokenizer.json`` ``normalizer`` entry describes, in Python.

    Supported: ``Sequence``, ``Replace`` (string or regex), ``NFC``/``NFD``/``NFKC``/``NFKD``, ``Lowercase`` and
    ``Strip``: what the converted tokenizers use.

    Raises:
        ValueError: another kind (the conversion then keeps ``tokenizer.json``).
    """
    if spec is None:
        return lambda text: text
    kind = spec.get("type")
    if kind == "Sequence":
        steps = [normaliser(s) for s in spec["normalizers"]]

        def run(text: str) -> str:
            for step in steps:
                text = step(text)
            return text

        return run
    if kind == "Replace":
        pattern, content = spec["pattern"], spec["content"]
        if "Regex" in pattern:
            compiled = _rust_regex(pattern["Regex"])
            return lambda text: compiled.sub(lambda _: content, text)
        old = pattern["String"]
        return lambda text: text.replace(old, content)
    if kind in ("NFC", "NFD", "NFKC", "NFKD"):
        return lambda text: unicodedata.normalize(kind, text)
    if kind == "Lowercase":
        return str.lower
    if kind == "Strip":
        left, right = spec.get("strip_left", True), spec.get("strip_right", True)

        def strip(text: str) -> str:
            text = text.lstrip() if left else text
            return text.rstrip() if right else text

        return strip
    raise ValueError(f"normaliser {kind!r} is not supported")


class PieceTokenizer:
    """A SentencePiece model with ``tokenizer.json``'s normaliser and special tokens: the same ids, in 28 MB."""

    def __init__(self, model_file: Path, meta: dict):
        import sentencepiece

        self.processor = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
        self.normalise = normaliser(meta["normalizer"])
        self.bos, self.eos = int(meta["bos_id"]), int(meta["eos_id"])
        # Special tokens written in a text (``<s>``, ``<mask>``…) are read as those tokens, as tokenizers does.
        self.special = {str(k): int(v) for k, v in (meta.get("special_tokens") or {}).items()}
        self._special_split = (
            re.compile("(" + "|".join(re.escape(t) for t in sorted(self.special, key=len, reverse=True)) + ")")
            if self.special
            else None
        )
        self.max_length: int | None = None
        pieces, ids = self.processor.get_piece_size(), (self.bos, self.eos, *self.special.values())
        if not all(0 <= i < pieces for i in ids):
            raise ValueError(f"special ids {sorted(set(ids))} not all in 0-{pieces - 1}")

    def set_max_length(self, max_length: int) -> None:
        """Truncate every text to ``max_length`` ids, ``<s>`` and ``</s>`` included."""
        self.max_length = max_length

    def _segment(self, text: str) -> list[int]:
        """The ids of a text without special tokens in it."""
        text = self.normalise(text).replace(" ", METASPACE)
        # The Metaspace pre-tokenizer's "always" prefix: one metaspace before a text that does not start with one.
        if text and not text.startswith(METASPACE):
            text = METASPACE + text
        return self.processor.encode(text) if text else []

    def ids(self, text: str) -> list[int]:
        """The ids of one text: ``<s>``, the pieces (truncated to ``max_length`` in all), ``</s>``."""
        if self._special_split is None or not any(token in text for token in self.special):
            pieces = self._segment(text)
        else:
            pieces = []
            for i, part in enumerate(self._special_split.split(text)):
                pieces += [self.special[part]] if i % 2 else self._segment(part)
        if self.max_length is not None:
            pieces = pieces[: max(0, self.max_length - 2)]
        return [self.bos, *pieces, self.eos]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """The ids of each text."""
        return [self.ids(t) for t in texts]


class JsonTokenizer:
    """Hugging Face ``tokenizers`` over ``tokenizer.json`` (about 280 MB for multilingual-e5)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.tokenizer.no_padding()

    def set_max_length(self, max_length: int) -> None:
        """Truncate every text to ``max_length`` ids, ``<s>`` and ``</s>`` included."""
        self.tokenizer.enable_truncation(max_length)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """The ids of each text, ``<s>``/``</s>`` included."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]


def _convert_again(model_dir: Path) -> str:
    """What to run for a converted tokenizer that cannot be used. Without --force: an ONNX export that is up to
    date is kept, and only the tokenizer is converted again."""
    return f"convert it again with `.venv/bin/faq-search prepare-model --onnx-only {model_dir}`"


def pieces_meta(model_dir: Path) -> dict | None:
    """``onnx/tokenizer.model.json`` when the model's tokenizer was converted for the ``tokenizer.json`` it has now,
    else None (with a warning when it was converted from another ``tokenizer.json``).

    Raises:
        ModelUnavailable: the file is unreadable, or the SentencePiece model is missing, truncated or changed.
    """
    from ..files import file_problem, sha256_file

    meta_path = model_dir / ONNX_DIR / PIECES_META
    if not meta_path.exists() and not meta_path.is_symlink():
        return None
    redo = _convert_again(model_dir)
    try:
        meta = json.loads(meta_path.read_text())
        source, size, digest = str(meta["source_sha256"]), int(meta["bytes"]), str(meta["sha256"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise ModelUnavailable(f"{meta_path} is unreadable ({type(exc).__name__}): {redo}") from None
    if sha256_file(model_dir / "tokenizer.json") != source:
        log.warning("%s changed since it was converted: serving it as it is (280 MB a process); %s",
                    model_dir / "tokenizer.json", redo)  # fmt: skip
        return None
    if meta.get("unicode") != unicodedata.unidata_version:
        # The normaliser's NFKC comes from Python's Unicode tables: another version could give other ids.
        log.warning(
            "%s was converted and checked with Unicode %s, this Python has %s: serving tokenizer.json (280 MB a "
            "process); %s", meta_path, meta.get("unicode"), unicodedata.unidata_version, redo,
        )  # fmt: skip
        return None
    path = model_dir / ONNX_DIR / PIECES_FILE
    problem = file_problem(path, size, digest, made="converted")
    if problem:
        raise ModelUnavailable(f"{path} {problem}: {redo}")
    return meta


def _load(model_dir: Path):
    """The tokenizer to serve ``model_dir`` with, and the file it comes from (the key of a preloaded copy)."""
    meta = pieces_meta(model_dir)
    if meta is not None:
        path = model_dir / ONNX_DIR / PIECES_FILE

        def make() -> PieceTokenizer:
            try:
                return PieceTokenizer(path, meta)
            except (ValueError, KeyError, TypeError, RuntimeError, OSError, RecursionError) as exc:
                raise ModelUnavailable(
                    f"{model_dir / ONNX_DIR / PIECES_META} or {path} cannot be used ({type(exc).__name__}: "
                    f"{str(exc)[:200]}): {_convert_again(model_dir)}"
                ) from None

        return path, make
    from tokenizers import Tokenizer

    path = model_dir / "tokenizer.json"
    return path, lambda: JsonTokenizer(Tokenizer.from_file(str(path)))


def load_tokenizer(model_dir: str | os.PathLike, max_length: int):
    """The model's tokenizer (the master's copy when it preloaded this one), truncating to ``max_length`` tokens.

    Raises:
        ModelUnavailable: a converted tokenizer whose files fail their checks (``pieces_meta``).
    """
    path, make = _load(Path(model_dir))
    tokenizer = _PRELOADED.get(_file_key(path)) or make()
    tokenizer.set_max_length(max_length)
    return tokenizer


def preload_tokenizer(model_dir: str | os.PathLike) -> bool:
    """Load the model's tokenizer now, in the process that will fork the workers (the gunicorn master).

    Loaded once before the fork, its memory is shared by every worker (copy-on-write: encoding only reads it)
    instead of being loaded in each; a worker whose tokenizer file is another (or changed since) loads its own.
    Only loading happens here, never encoding: a library's thread pool is then first made in each worker.
    Returns whether it was loaded (False when the directory has no tokenizer).
    """
    model_dir = Path(model_dir)
    if not (model_dir / "tokenizer.json").is_file():
        return False
    path, make = _load(model_dir)
    _PRELOADED.clear()  # one model at a time: a reload of the master replaces it
    _PRELOADED[_file_key(path)] = make()
    return True
