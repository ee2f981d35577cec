"""Loading the search engine a configuration names: the index, then the model that made it (no Flask here)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import DEFAULTS
from ..encoders.base import BACKENDS, default_model, model_id_for
from ..encoders.loading import load_embedder
from ..indexing.store import load_latest_sound
from .engine import SearchEngine


def load_engine(config: Mapping[str, Any]) -> SearchEngine:
    """Load the model and the index named by ``config`` and join them.

    Raises:
        ModelUnavailable, IndexUnavailable, IndexMismatch: with a message that says what to run.
    """
    # Cheap: fail before loading the model if no build loads. A damaged current build falls back on the newest
    # earlier one that loads (a worker restarted by gunicorn keeps serving instead of stopping the server).
    index = load_latest_sound(config["FAQ_INDEX"])
    embedder = load_embedder(*encoder_for(config, index.manifest))
    return engine_for(config, embedder, index)


def encoder_for(config: Mapping[str, Any], manifest: dict) -> tuple[str, str]:
    """The model and backend that encode queries for an index: the configured model (or the fine-tune of it the
    index was built with) and the backend that made the index's vectors, unless ``FAQ_BACKEND`` says otherwise
    (the engine then refuses a mismatch). The gunicorn master preloads the same one."""
    model = config.get("FAQ_MODEL") or default_model()
    tuned = manifest["model"].get("finetuned")
    if tuned and tuned["base"] == model_id_for(model) and Path(tuned["path"]).is_dir():
        # The index was built with a fine-tune of the configured model: that fine-tune is part of the index.
        model = tuned["path"]
    built_with = (manifest["model"].get("encoder") or {"backend": "torch"})["backend"]
    return model, config.get("FAQ_BACKEND") or (built_with if built_with in BACKENDS else "auto")


def engine_for(config: Mapping[str, Any], embedder, index) -> SearchEngine:
    """The service's engine over a loaded index: the configured threshold override and response cache size.

    Raises:
        IndexMismatch: the index was built with another model or encoder than ``embedder``.
    """
    return SearchEngine(
        embedder,
        index,
        scoring={"answer_threshold": config.get("FAQ_MIN_SCORE")},
        cache_size=int(config.get("FAQ_CACHE_SIZE", DEFAULTS["FAQ_CACHE_SIZE"])),
    )
