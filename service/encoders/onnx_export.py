"""Exporting a model directory to ONNX (fp32 graph, then int8 quantisations), at set-up time.

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
    # Eager attention exports the matmul-softmax pattern that ONNX Runtime's BERT optimiser fuses into its
    # Attention kernel (the default SDPA path exports ops it does not recognise): 1.6x faster on long passages.
    model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()

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
        data = {backend: _weights_apart(out / FILES[backend], out / DATA_FILES[backend]) for backend in FILES}
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


def _weights_apart(graph: Path, data: Path) -> dict:
    """Move a graph's weights into ``data`` (ONNX external data, one file): ONNX Runtime maps that file instead of
    copying it into each worker's memory. Returns what ``onnx_encoder.check_weights`` checks: file, size, SHA-256."""
    import onnx

    model = onnx.load(str(graph))
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
