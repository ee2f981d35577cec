"""Exporting a model directory to ONNX (fp32 graph, then int8 quantisations), at set-up time.

The word-embedding table (250,037 × 384 floats, 384 MB of the model's 470) is kept out of the heavy steps: the graph
is traced, fused and quantised with the table's first ``TRACE_ROWS`` rows only, then the real table, quantised with
ONNX Runtime's own functions row block by row, takes their place as the files are written (``_put_word_table``).
Every step then holds the rest of the model (86 MB) instead of all of it: the export's peak memory fell from 3.8 GB to
the figure docs/model.md gives, and the files are byte for byte those the whole-table export writes (measured).

Why not sentence-transformers' own ``backend="onnx"``: it loads through optimum-onnx, whose only release on PyPI
(0.1.0) requires transformers < 4.58, while sentence-transformers 6.2 requires transformers >= 5. So the model is
exported here with ``torch.onnx.export`` (mean pooling and L2 normalisation inside the graph, as the
sentence-transformers pipeline does), quantised with ONNX Runtime's dynamic int8 quantisation, and run by
``onnx_encoder.OnnxEmbedder`` with ONNX Runtime and the model's own tokenizer, converted to SentencePiece
(``tokenizer_export.py``; ``onnx_encoder.py`` lists the layout).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import time
import warnings
from pathlib import Path

from ..errors import ModelUnavailable
from ..files import sha256_file
from .onnx_encoder import DATA_FILES, FILES, ONNX_DIR, WEIGHTS_APART_SINCE
from .tokenizer_export import convert_tokenizer

log = logging.getLogger(__name__)

#: What each file quantises (``quantize_dynamic``'s ``op_types_to_quantize``).
QUANTISED_OPS = {"onnx": ["Gather"], "onnx-int8": ["MatMul", "Gather"]}
EXPORT_MARKER = "export.json"
#: Bump when the exported graph changes, so that `prepare_model.py` exports again.
EXPORTER_VERSION = 6
assert EXPORTER_VERSION >= WEIGHTS_APART_SINCE
OPSET = 17
#: Rows of the word-embedding table the graph is traced, fused and quantised with (the trace's ids stay below).
TRACE_ROWS = 256
#: Rows of the real table quantised at a time (each block's float copy is this many rows).
QUANTISE_ROWS = 16384


def _check_pipeline(model_dir: Path) -> None:
    """Refuse a model the in-graph pooling would not reproduce: only Transformer → mean Pooling → Normalize."""
    try:
        modules = json.loads((model_dir / "modules.json").read_text())
        pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(
            f"{model_dir} is not a sentence-transformers directory this exporter knows: {exc}"
        ) from exc
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    mean = pooling.get("pooling_mode", "mean") == "mean" or bool(pooling.get("pooling_mode_mean_tokens"))
    if kinds != ["Transformer", "Pooling", "Normalize"] or not mean:
        raise ModelUnavailable(
            f"{model_dir}: ONNX export supports Transformer + mean Pooling + Normalize only, "
            f"found modules {kinds} and pooling {pooling}; use --backend torch for this model"
        )


def is_exported(model_dir: str | os.PathLike) -> bool:
    """True when ``model_dir/onnx`` holds both files, exported from the current weights by this exporter."""
    model_dir = Path(model_dir)
    marker = model_dir / ONNX_DIR / EXPORT_MARKER
    if not marker.is_file() or not all((model_dir / ONNX_DIR / f).is_file() for f in FILES.values()):
        return False
    try:
        info = json.loads(marker.read_text())
        # Each weights file as exported (its size: a damaged one is exported again, not served).
        intact = all(
            (model_dir / ONNX_DIR / d["file"]).is_file()
            and (model_dir / ONNX_DIR / d["file"]).stat().st_size == d["bytes"]
            for d in info["data"].values()
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
    return (
        intact
        and info.get("exporter_version") == EXPORTER_VERSION
        and info.get("weights_sha256") == sha256_file(model_dir / "model.safetensors")
    )


def export_onnx(model_dir: str | os.PathLike, force: bool = False) -> Path:
    """Export ``model_dir`` to ``model_dir/onnx`` (both files above); skipped when already up to date.

    Offline: reads only the directory. Takes about 20 s and 300 MB of disk for multilingual-e5-small.

    Returns:
        The ``onnx`` directory.
    Raises:
        ModelUnavailable: not a model directory, or a pipeline the exported graph would not reproduce.
    """
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    model_dir = Path(model_dir)
    out = model_dir / ONNX_DIR
    if not (model_dir / "model.safetensors").is_file():
        raise ModelUnavailable(f"{model_dir} has no model.safetensors to export")
    if not force and is_exported(model_dir):
        log.info("ONNX export in %s is up to date", out)
        convert_tokenizer(model_dir)
        return out
    _check_pipeline(model_dir)
    started = time.perf_counter()
    out.mkdir(exist_ok=True)
    (out / EXPORT_MARKER).unlink(missing_ok=True)  # written last: a half-done export is never "up to date"
    for leftover in out.glob("*.tmp.onnx"):  # an interrupted export's
        leftover.unlink()
    # Eager attention exports the matmul-softmax pattern that ONNX Runtime's BERT optimiser fuses into its
    # Attention kernel (the default SDPA path exports ops it does not recognise): 1.6x faster on long passages.
    model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    word = model.get_input_embeddings()
    table = WordTable(model_dir, word.num_embeddings, word.embedding_dim)
    small = torch.nn.Embedding(TRACE_ROWS, word.embedding_dim, padding_idx=word.padding_idx)
    with torch.no_grad():
        small.weight.copy_(word.weight[:TRACE_ROWS])
    model.set_input_embeddings(small)
    del word
    gc.collect()

    class MeanPooled(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            hidden = self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    ids = torch.tensor([[0, 100, 200, 2], [0, 100, 2, 1]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    fp32 = out / "model-fp32.tmp.onnx"  # the plain export; each backend's file is a quantisation of it
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter is deprecated in favour of dynamo, which needs onnxscript and traces this
        # model's attention-mask code less reliably; its deprecation and tracer warnings are expected here.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            MeanPooled(model),
            (ids, mask),
            str(fp32),
            input_names=["input_ids", "attention_mask"],
            output_names=["sentence_embedding"],
            opset_version=OPSET,
            dynamo=False,
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "sentence_embedding": {0: "batch"},
            },
        )
    # Each step holds its own copy of the weights: free the torch model before the ONNX tools load theirs, and each
    # tool's before the next (the set-up's peak memory is this export's).
    config = model.config
    del model
    gc.collect()
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))  # the optimiser and quantiser log one line per tensor on the root
    try:
        fused = out / "model-fused.tmp.onnx"
        fusions = _fuse(fp32, fused, config)
        gc.collect()
        for backend, ops in QUANTISED_OPS.items():
            # Per-channel scales: cosine to fp32 0.996 on covid questions, against 0.992 per tensor (same speed).
            quantize_dynamic(
                str(fused),
                str(out / FILES[backend]),
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=ops,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
            gc.collect()
        data = {backend: _weights_apart(out / FILES[backend], out / DATA_FILES[backend], table) for backend in FILES}
    finally:
        root.setLevel(level)
        for tmp in out.glob("*.tmp.onnx"):
            tmp.unlink()
    import onnxruntime

    (out / EXPORT_MARKER).write_text(
        json.dumps(
            {
                "exporter_version": EXPORTER_VERSION,
                "opset": OPSET,
                "weights_sha256": sha256_file(model_dir / "model.safetensors"),
                "fused": {"by": "onnxruntime.transformers.optimizer, model_type bert", "nodes": fusions},
                "files": FILES,
                "torch": torch.__version__,
                "onnxruntime": onnxruntime.__version__,
                "quantized_ops": QUANTISED_OPS,
                "quantization": "onnxruntime.quantization.quantize_dynamic, QInt8 weights, per channel",
                "data": data,
            },
            indent=2,
        )
        + "\n"
    )
    convert_tokenizer(model_dir, force=force)
    log.info("exported %s to ONNX (%s) in %.1f s", model_dir, ", ".join(FILES.values()), time.perf_counter() - started)
    return out


class WordTable:
    """The model's word-embedding table, read from ``model.safetensors`` when it is put into a graph."""

    KEY = "embeddings.word_embeddings.weight"

    def __init__(self, model_dir: Path, rows: int, dim: int):
        self.path, self.rows, self.dim = model_dir / "model.safetensors", rows, dim

    def quantised(self) -> tuple:
        """The table quantised as ONNX Runtime's dynamic quantisation quantises a Gather's table (per tensor, uint8,
        asymmetric: ``quant_utils.quantize_data``), a block of rows at a time: ``(uint8 table, scale, zero point)``."""
        import numpy as np
        from onnx import TensorProto
        from onnxruntime.quantization.quant_utils import compute_data_quant_params, quantize_nparray
        from safetensors import safe_open

        with safe_open(str(self.path), framework="numpy") as f:
            if self.KEY not in set(f.keys()):  # safe_open has no __contains__
                raise ModelUnavailable(
                    f"{self.path} has no {self.KEY!r}: not a BertModel checkpoint this exporter reads"
                )
            table = f.get_slice(self.KEY)
            rows = table.get_shape()[0]
            low, high = np.float32(np.inf), np.float32(-np.inf)
            for start in range(0, rows, QUANTISE_ROWS):
                block = table[start : min(start + QUANTISE_ROWS, rows)]
                low, high = min(low, block.min()), max(high, block.max())
            zero_point, scale = compute_data_quant_params(
                np.array([low, high], dtype=np.float32), TensorProto.UINT8, False, False, None, low, high
            )
            out = np.empty((rows, table.get_shape()[1]), dtype=np.uint8)
            for start in range(0, rows, QUANTISE_ROWS):
                block = table[start : min(start + QUANTISE_ROWS, rows)]
                out[start : start + len(block)] = quantize_nparray(TensorProto.UINT8, block, scale, zero_point)
        return out, scale, zero_point


def _put_word_table(model, table: WordTable) -> None:
    """Replace the traced graph's short word table (``TRACE_ROWS`` rows, quantised) by the real one, quantised."""
    from onnx import numpy_helper

    name = "inner." + WordTable.KEY
    inits = {init.name: init for init in model.graph.initializer}
    quantised = inits.get(name + "_quantized")
    if quantised is None or list(quantised.dims) != [TRACE_ROWS, table.dim]:
        raise ModelUnavailable(f"the exported graph has no quantised word table {name!r} of {TRACE_ROWS} rows")
    values, scale, zero_point = table.quantised()
    for suffix, array in (("_quantized", values), ("_scale", scale), ("_zero_point", zero_point)):
        init = inits[name + suffix]
        array = array.astype(numpy_helper.to_array(init).dtype)
        if init.raw_data or not (init.float_data or init.int32_data):
            init.CopyFrom(numpy_helper.from_array(array, init.name))
        else:  # written as the quantiser writes it (a scalar in float_data or int32_data): the same bytes
            field = init.float_data if init.float_data else init.int32_data
            del field[:]
            field.extend(array.reshape(-1).tolist())


def _weights_apart(graph: Path, data: Path, table: WordTable | None = None) -> dict:
    """Move a graph's weights into ``data`` (ONNX external data, one file): ONNX Runtime maps that file instead of
    copying it into each worker's memory; with ``table``, the real word table first takes the short one's place.
    Returns what ``onnx_encoder.check_weights`` checks: file, size, SHA-256."""
    import onnx

    model = onnx.load(str(graph))
    if table is not None:
        _put_word_table(model, table)
    data.unlink(missing_ok=True)  # onnx appends to an existing file
    onnx.save_model(
        model, str(graph), save_as_external_data=True, all_tensors_to_one_file=True, location=data.name,
        size_threshold=1024,
    )  # fmt: skip
    del model
    gc.collect()
    data.chmod(graph.stat().st_mode & 0o777)  # readable as the graph file is (onnx creates it for its owner only)
    return {"file": data.name, "bytes": data.stat().st_size, "sha256": sha256_file(data)}


def _fuse(src: Path, dst: Path, config) -> dict[str, int]:
    """ONNX Runtime's transformer optimiser: fused Attention, SkipLayerNormalization and BiasGelu kernels.

    Returns:
        How many nodes of each fused kind the graph now has.

    The embedding layer is left unfused so that its word table stays a plain Gather, which int8 quantisation
    then shrinks (the fused EmbedLayerNormalization would keep it in fp32).
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_embed_layer_norm = False
    optimized = optimize_model(
        str(src),
        model_type="bert",
        num_heads=config.num_attention_heads,
        hidden_size=config.hidden_size,
        optimization_options=options,
    )
    optimized.save_model_to_file(str(dst))
    return {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
