"""Choosing and loading the encoder for a model: ONNX Runtime when the model has an export, else torch."""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelUnavailable
from .base import BACKENDS, PREFERRED_BACKEND, Embedder, check_local, default_backend, default_model
from .onnx_encoder import FILES, ONNX_DIR, onnx_embedder
from .torch_encoder import SentenceTransformerEmbedder


def resolve_backend(name_or_path: str, backend: str = "auto") -> str:
    """``backend`` itself, or for ``"auto"``: the preferred ONNX backend if the model directory has that export,
    else torch (hub names, fine-tuned models, directories never exported)."""
    if backend != "auto":
        if backend not in BACKENDS:
            raise ValueError(f"backend must be 'auto' or one of {', '.join(BACKENDS)}, not {backend!r}")
        return backend
    return PREFERRED_BACKEND if (Path(name_or_path) / ONNX_DIR / FILES[PREFERRED_BACKEND]).is_file() else "torch"


def load_embedder(name_or_path: str | None = None, backend: str | None = None, threads: int | None = None) -> Embedder:
    """The embedder for a model and a backend (default ``FAQ_MODEL`` and ``FAQ_BACKEND``, else auto), on ``threads``
    threads (default ``FAQ_ENCODER_THREADS``, else the library's).

    Raises:
        ModelUnavailable: the model, or its export for that backend, is missing or cannot be loaded.
    """
    name_or_path = name_or_path or default_model()
    check_local(name_or_path)
    try:
        backend = resolve_backend(name_or_path, backend or default_backend())
    except ValueError as exc:
        raise ModelUnavailable(f"{exc} (FAQ_BACKEND / --backend)") from None
    if backend == "torch":
        return SentenceTransformerEmbedder(name_or_path, threads=threads)
    if not Path(name_or_path).is_dir():
        raise ModelUnavailable(
            f"backend {backend} needs a local model directory exported to ONNX; "
            f"{name_or_path!r} is not one (use FAQ_BACKEND=torch for hub models)"
        )
    return onnx_embedder(name_or_path, backend, threads)
