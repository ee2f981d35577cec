"""The sentence-transformers encoder on torch: used to build indexes, to fine-tune, and for hub models."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ModelUnavailable
from .base import PromptsMixin, check_local, default_model, encoder_threads, model_id_for


class SentenceTransformerEmbedder(PromptsMixin):
    """A sentence-transformers model on the CPU, loaded once."""

    def __init__(self, name_or_path: str | None = None, device: str = "cpu", threads: int | None = None):
        name_or_path = name_or_path or default_model()
        path = Path(name_or_path)
        check_local(name_or_path)
        from sentence_transformers import SentenceTransformer

        threads = threads or encoder_threads()
        if threads:
            import torch

            torch.set_num_threads(threads)
            try:
                torch.set_num_interop_threads(1)
            except RuntimeError:  # only allowed before torch's first parallel work; then it is already set
                pass

        try:
            self.model = SentenceTransformer(
                str(path) if path.is_dir() else name_or_path, device=device, local_files_only=path.is_dir()
            )
        except Exception as exc:  # the library raises OSError, ValueError, HTTP errors…
            raise ModelUnavailable(f"cannot load model {name_or_path!r}: {exc}") from exc
        self.model_id = model_id_for(name_or_path)
        self.dimension = int(
            self.model.get_embedding_dimension()
            if hasattr(self.model, "get_embedding_dimension")
            else self.model.get_sentence_embedding_dimension()
        )
        self.prompts = dict(self.model.prompts or {})
        self.max_seq_length = self.model.max_seq_length

    def count_tokens(self, texts: Sequence[str], kind: str = "query") -> list[int]:
        """Tokens the model reads for each text (prompt included, at most ``max_seq_length``)."""
        prompt = self.prompt_for(kind)
        encoded = self.model.tokenizer(
            [prompt + t.strip() for t in texts], truncation=True, max_length=self.max_seq_length
        )["input_ids"]
        return [len(ids) for ids in encoded]

    def encoder_info(self) -> dict:
        """What the manifest records about the encoder that made the vectors."""
        return {"backend": "torch", "file": None}

    def encode(
        self, texts: Sequence[str], kind: str = "query", batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray:
        """Embed texts with the prompt for ``kind``; leading/trailing whitespace is stripped first."""
        if kind not in ("query", "passage"):
            raise ValueError(f"kind must be 'query' or 'passage', not {kind!r}")
        cleaned = [t.strip() for t in texts]
        vectors = self.model.encode(
            cleaned,
            prompt_name=self._prompt_name(kind),
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=show_progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)
