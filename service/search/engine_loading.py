"""Loading the search engine the settings name: the index, then the model that made it (no Flask here)."""

from __future__ import annotations

import threading
from pathlib import Path

from ..encoders.base import BACKENDS, model_id_for
from ..encoders.loading import load_embedder
from ..indexing.manifest import Manifest
from ..indexing.store import load_latest_sound
from ..settings import Settings
from .engine import SearchEngine


class EmbedderPool:
    """The encoders of a process, one per model, backend and thread count: the FAQs of a service built with the same
    model share one (one ONNX session, one tokenizer); a FAQ built with another model gets its own."""

    def __init__(self):
        self._lock = threading.Lock()
        self._embedders: dict[tuple, object] = {}

    def get(self, model: str, backend: str, threads: int | None):
        """The encoder of ``model`` on ``backend``, loaded the first time it is asked for.

        Raises:
            ModelUnavailable: the model or its export cannot be loaded.
        """
        key = (str(Path(model).resolve()) if Path(model).is_dir() else model, backend, threads)
        with self._lock:  # two FAQs loading at once load one encoder
            found = self._embedders.get(key)
            if found is None:
                found = self._embedders[key] = load_embedder(model, backend, threads=threads)
            return found

    def __len__(self) -> int:
        return len(self._embedders)


def load_engine(settings: Settings, embedders: EmbedderPool | None = None) -> SearchEngine:
    """Load the model and the index the settings name and join them.

    Args:
        embedders: the process's encoders (a service of several FAQs shares one pool); None: a new encoder.

    Raises:
        ModelUnavailable, IndexUnavailable, IndexMismatch: with a message that says what to run.
    """
    # Cheap: fail before loading the model if no build loads. A damaged current build falls back on the newest
    # earlier one that loads (a worker restarted by gunicorn keeps serving instead of stopping the server).
    index = load_latest_sound(settings.index)
    model, backend = encoder_for(settings, index.manifest)
    if embedders is None:
        embedder = load_embedder(model, backend, threads=settings.encoder_threads)
    else:
        embedder = embedders.get(model, backend, settings.encoder_threads)
    return engine_for(settings, embedder, index)


def encoder_for(settings: Settings, manifest: Manifest) -> tuple[str, str]:
    """The model and backend that encode queries for an index: the configured model (or the fine-tune of it the
    index was built with) and the backend that made the index's vectors, unless ``FAQ_BACKEND`` says otherwise
    (the engine then refuses a mismatch). The gunicorn master preloads the same one."""
    model = settings.model_or_default()
    tuned = manifest.model.finetuned
    if tuned and tuned["base"] == model_id_for(model) and Path(tuned["path"]).is_dir():
        # The index was built with a fine-tune of the configured model: that fine-tune is part of the index.
        model = tuned["path"]
    built_with = manifest.encoder_backend
    return model, settings.backend or (built_with if built_with in BACKENDS else "auto")


def engine_for(settings: Settings, embedder, index) -> SearchEngine:
    """The service's engine over a loaded index: the configured threshold override and response cache size.

    Raises:
        IndexMismatch: the index was built with another model or encoder than ``embedder``.
    """
    return SearchEngine(
        embedder, index, scoring={"answer_threshold": settings.min_score}, cache_size=settings.cache_size
    )
