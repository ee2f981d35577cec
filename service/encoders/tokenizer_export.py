"""Converting a model's ``tokenizer.json`` to a SentencePiece model, at set-up time (``tokenizer.py`` serves it).

The pieces, their scores and ids are copied as they are (the special tokens as control pieces, so that they are never
read from text); the normaliser of ``tokenizer.json`` is kept as written, run in Python at encoding time. The result is
checked against ``tokenizer.json`` itself before it is kept: the same ids on every sentence of ``CHECK_SENTENCES``
and on nearly every one of 5,000 random strings (two equally scored splittings may be broken differently: on
multilingual-e5, 13 of 80,378 random strings, all on "‴", whose NFKC form is three primes). A tokenizer the
conversion does not support (another model type, byte fallback, another pre-tokenizer) is left as it is: the
encoder then serves ``tokenizer.json``.
"""

from __future__ import annotations

import json
import logging
import os
import random
import unicodedata
from pathlib import Path

from ..files import sha256_file
from .tokenizer import METASPACE, ONNX_DIR, PIECES_FILE, PIECES_META, PieceTokenizer, normaliser

log = logging.getLogger(__name__)

#: Bump when the conversion changes, so that ``prepare-model`` converts again.
CONVERTER_VERSION = 2
#: Random strings whose ids may differ (ties between equally scored splittings), at most.
MAX_RANDOM_MISMATCH = 0.002
CHECK_SENTENCES = [
    "query: Comment déposer une facture sur Chorus Pro ?",
    "query: je narrive pas a me connecter a mon compte chorus",
    "passage: Le fournisseur dépose sa facture au format PDF, ou en EDI (UBL, CII, PES).",
    "query: Où en est le traitement de ma facture n° FA-2024-00123 du 12/03/2024 ?",
    "query: «Mise en paiement» — qu'est-ce que ça veut dire ? 😀",
    "query: Œuvre, cœur, ÆSIR, ﬁchier, ½ € ; l’État…",
    "passage: Das ist ein Test. これはテストです。 这是一个测试。 테스트입니다. Это тест. اختبار",
    "query:   espaces   multiples\tet\nretours\u200bzéro\ufeff",
    "query: ～ 🈻 ▁ \x7f\x01 fin",
    "passage: une balise <s>barrée</s>, <pad> <unk> <mask> et <s>",
    "query:<s>x</s>y",
    "",
    " ",
    "x",
]


def _alphabet() -> list[str]:
    """Characters of every kind the normaliser and the pieces treat apart (Latin, marks, spaces, CJK, controls)."""
    points = [*range(1, 0x250), *range(0x300, 0x370), *range(0x2000, 0x2070), *range(0x20A0, 0x20C0)]
    points += [0x1680, 0x2581, 0x3000, 0x3042, 0x4E00, 0xAC00, 0xFEFF, 0xFF5E, 0xFFFD, 0x1F23B, 0x1F600, 0xE000]
    return [chr(p) for p in points]


def _supported(spec: dict) -> str | None:
    """Why ``tokenizer.json`` cannot be converted, or None when it can."""
    model, pre = spec.get("model") or {}, spec.get("pre_tokenizer") or {}
    if model.get("type") != "Unigram" or model.get("byte_fallback"):
        return f"model {model.get('type')!r} (byte fallback {model.get('byte_fallback')!r}), not a plain Unigram"
    if pre.get("type") != "Metaspace" or pre.get("replacement") != METASPACE or not pre.get("split", True):
        return f"pre-tokenizer {pre.get('type')!r}, not a splitting Metaspace"
    if pre.get("prepend_scheme", "always" if pre.get("add_prefix_space", True) else "never") != "always":
        return "a Metaspace that does not always prepend"
    for token in spec.get("added_tokens", []):
        if (
            not token.get("special")
            or token.get("normalized")
            or token.get("lstrip")
            or token.get("rstrip")
            or (token.get("single_word"))
        ):
            return f"added token {token.get('content')!r} is not a plain special token"
    try:
        normaliser(spec.get("normalizer"))
    except (ValueError, KeyError, TypeError) as exc:
        return f"normaliser: {exc}"
    return None


def _special_ids(tokenizer) -> tuple[int, int]:
    """The ids the post-processor puts before and after a text (``<s>``, ``</s>``)."""
    ids = tokenizer.encode("").ids
    if len(ids) != 2:
        raise ValueError(f"the post-processor adds {len(ids)} tokens around a text, not 2")
    return ids[0], ids[1]


def convert_tokenizer(model_dir: str | os.PathLike, force: bool = False) -> dict | None:
    """Write ``onnx/tokenizer.model`` and ``onnx/tokenizer.model.json`` from ``model_dir/tokenizer.json``.

    Skipped when both are up to date. Takes about 10 s for multilingual-e5 (the check included).

    Returns:
        What ``tokenizer.model.json`` holds, or None when the tokenizer cannot be converted (the reason is logged;
        the files of an earlier conversion are removed).
    """
    from sentencepiece import sentencepiece_model_pb2 as pb
    from tokenizers import Tokenizer

    model_dir = Path(model_dir)
    source = model_dir / "tokenizer.json"
    out = model_dir / ONNX_DIR
    meta_path, model_path = out / PIECES_META, out / PIECES_FILE
    source_sha = sha256_file(source)
    if not force and meta_path.is_file() and model_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            current = (CONVERTER_VERSION, source_sha, unicodedata.unidata_version, sha256_file(model_path))
            if (meta.get("converter_version"), meta.get("source_sha256"), meta.get("unicode"), meta.get("sha256")) == (
                current
            ):
                return meta
        except ValueError:
            pass
    meta_path.unlink(missing_ok=True)  # written last: a half-done conversion is never "up to date"
    model_path.unlink(missing_ok=True)
    spec = json.loads(source.read_text())
    reason = _supported(spec)
    if reason:
        log.warning("%s is served as it is (not converted to SentencePiece): %s", source, reason)
        return None
    reference = Tokenizer.from_file(str(source))
    bos, eos = _special_ids(reference)
    vocab, unk = spec["model"]["vocab"], spec["model"].get("unk_id")
    special = {t["id"] for t in spec.get("added_tokens", []) if t.get("special")} | {bos, eos}
    proto = pb.ModelProto()
    proto.trainer_spec.model_type = pb.TrainerSpec.UNIGRAM
    proto.trainer_spec.vocab_size = len(vocab)
    proto.trainer_spec.byte_fallback = False
    proto.trainer_spec.unk_id = unk if unk is not None else -1
    proto.trainer_spec.bos_id, proto.trainer_spec.eos_id = bos, eos
    pad = next((t["id"] for t in spec.get("added_tokens", []) if t["content"] == "<pad>"), -1)
    proto.trainer_spec.pad_id = pad
    # The normaliser runs in Python (tokenizer.py): SentencePiece only turns spaces into metaspaces.
    proto.normalizer_spec.name = "identity"
    proto.normalizer_spec.add_dummy_prefix = False
    proto.normalizer_spec.remove_extra_whitespaces = False
    proto.normalizer_spec.escape_whitespaces = True
    kinds = pb.ModelProto.SentencePiece
    for i, (piece, score) in enumerate(vocab):
        entry = proto.pieces.add()
        entry.piece, entry.score = piece, float(score)
        entry.type = kinds.UNKNOWN if i == unk else kinds.CONTROL if i in special else kinds.NORMAL
    out.mkdir(exist_ok=True)
    model_path.write_bytes(proto.SerializeToString())
    meta = {
        "converter_version": CONVERTER_VERSION,
        "source": "tokenizer.json",
        "source_sha256": source_sha,
        "file": PIECES_FILE,
        "bytes": model_path.stat().st_size,
        "sha256": sha256_file(model_path),
        "normalizer": spec.get("normalizer"),
        "bos_id": bos,
        "eos_id": eos,
        "special_tokens": {t["content"]: t["id"] for t in spec.get("added_tokens", [])},
        # NFKC runs with Python's Unicode tables: the ids were checked with this version (tokenizer.py checks it).
        "unicode": unicodedata.unidata_version,
        "pieces": len(vocab),
    }
    converted = PieceTokenizer(model_path, meta)
    wrong = [t for t in CHECK_SENTENCES if converted.ids(t) != reference.encode(t).ids]
    rng = random.Random(0)
    alphabet = _alphabet()
    strings = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))) for _ in range(5000)]
    mismatched = sum(converted.ids(t) != reference.encode(t).ids for t in strings)
    meta["checked"] = {"sentences": len(CHECK_SENTENCES), "random_strings": len(strings), "random_differ": mismatched}
    if wrong or mismatched > MAX_RANDOM_MISMATCH * len(strings):
        model_path.unlink()
        log.warning(
            "%s is served as it is: its SentencePiece conversion gave other ids on %d of the check sentences "
            "(first: %r) and %d of %d random strings", source, len(wrong), wrong[:1], mismatched, len(strings),
        )  # fmt: skip
        return None
    model_path.chmod(source.stat().st_mode & 0o777)
    meta_path.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    log.info("converted %s to %s (%d bytes)", source, model_path, meta["bytes"])
    return meta
