"""French FAQ semantic search: embeddings (sentence-transformers) + FAISS behind a Flask API."""

from .app import create_app

__all__ = ["create_app"]
