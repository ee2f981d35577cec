"""French FAQ semantic search: embeddings (sentence-transformers) + FAISS behind a Flask API.

Subpackages by concern, arrows pointing down: ``http`` and ``integrations`` over ``evaluation`` over ``search``
over ``indexing`` over ``encoders``; ``corpus``, ``config``, ``errors`` and ``files`` are shared by all. Importing
``service`` itself imports nothing (the client stays standard library only).
"""

__version__ = "0.4.0"
