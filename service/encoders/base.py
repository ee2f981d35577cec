"""What every encoder shares: the ``Embedder`` protocol, prompts, and how ``FAQ_MODEL`` names a model.

The encoders themselves are ``torch_encoder`` (sentence-transformers) and ``onnx_encoder`` (ONNX Runtime);
``loading.load_embedder`` picks one. Nothing here imports torch, ONNX Runtime or transformers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import ModelUnavailable
from ..settings import DEFAULT_MODEL_DIR, Settings

MODEL_MARKER = "faq_model.json"


def default_model() -> str:
    """``FAQ_MODEL`` if set, else the converted model directory."""
    return Settings.from_env().model_or_default()


def encoder_threads() -> int | None:
    """Threads the encoder may use: ``FAQ_ENCODER_THREADS`` (gunicorn sets it per worker), else None (library
    default: all cores)."""
    return Settings.from_env().encoder_threads


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


#: Encoder backends: sentence-transformers on torch, or the model exported to ONNX (``onnx_encoder.py``).
BACKENDS = ("torch", "onnx", "onnx-int8")
#: The fastest backend at the same quality (docs/performance.md: full int8 loses 0.019 R@1 on the dev set);
#: "auto" picks it when the model has an export.
PREFERRED_BACKEND = "onnx"


def default_backend() -> str:
    """``FAQ_BACKEND`` if set, else ``"auto"``."""
    return Settings.from_env().backend or "auto"


def count_tokens(embedder, texts: Sequence[str], kind: str = "query") -> list[int]:
    """The embedder's own token counts, or for one that cannot count (tests' fakes) a rough estimate: one token per
    three characters plus the prompt, which is what French text takes with e5's tokenizer on average."""
    if hasattr(embedder, "count_tokens"):
        return embedder.count_tokens(texts, kind)
    return [2 + len(embedder.prompt_for(kind) + t.strip()) // 3 for t in texts]


def encoder_info(embedder) -> dict | None:
    """``{"backend", "file"}`` of an embedder, or None for one without a named backend (tests' fakes)."""
    return embedder.encoder_info() if hasattr(embedder, "encoder_info") else None


def check_local(name_or_path: str) -> None:
    """Refuse a path that is not a model directory (a name without a path is a hub model, checked on loading)."""
    path = Path(name_or_path)
    looks_local = path.is_absolute() or name_or_path.startswith((".", "~")) or path.exists()
    if looks_local and not path.is_dir():
        hint = (
            " Run `make model` (or `faq-search prepare-model`) to create it."
            if path.resolve() == DEFAULT_MODEL_DIR
            else ""
        )
        raise ModelUnavailable(f"model directory {name_or_path} does not exist.{hint}")


class Embedder(Protocol):
    """What the index builder and the search engine need from a model."""

    model_id: str
    dimension: int
    prompts: dict[str, str]

    def encode(
        self, texts: Sequence[str], kind: str = "query", batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray:
        """(n, dimension) float32, L2-normalised; ``kind`` is ``"query"`` or ``"passage"``."""
        ...

    def prompt_for(self, kind: str) -> str:
        """The text prepended to texts of this kind ("" if none)."""
        ...

    def count_tokens(self, texts: Sequence[str], kind: str = "query") -> list[int]:
        """Tokens the model reads for each text (optional: the request budget estimates without it)."""
        ...

    def encoder_info(self) -> dict:
        """``{"backend", "file"}`` recorded in the manifest (optional; absent means torch)."""
        ...


class PromptsMixin:
    """The model's prompts by kind: "query", and "passage" (or sentence-transformers' "document")."""

    prompts: dict[str, str]

    def _prompt_name(self, kind: str) -> str | None:
        for name in (kind,) if kind == "query" else ("passage", "document"):
            if name in self.prompts:
                return name
        return None

    def prompt_for(self, kind: str) -> str:
        """The text prepended for ``kind`` ("" when the model has no such prompt)."""
        name = self._prompt_name(kind)
        return self.prompts[name] if name else ""
