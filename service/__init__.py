"""French FAQ semantic search: embeddings (sentence-transformers) + FAISS behind a Flask API.

Subpackages by concern, arrows pointing down (docs/architecture.md; import-linter checks them): ``cli`` over
``deploy`` over ``http`` and ``integrations`` (adapters) over ``core`` (the running service) over ``evaluation``,
``learning``, ``search`` (with its answer ``decision``), ``indexing`` and ``encoders``; ``corpus``, ``settings``,
``errors`` and ``files`` are shared by all. Importing ``service`` itself imports nothing (the client stays standard
library only).
"""

__version__ = "0.4.0"
