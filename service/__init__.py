"""French FAQ semantic search: embeddings (sentence-transformers) + FAISS behind a Flask API.

Subpackages by concern, arrows pointing down (docs/architecture.md; import-linter checks them): ``cli`` over
``deploy`` over ``http`` and ``integrations`` (adapters) over ``core`` (the running service) over ``evaluation``,
``learning``, ``search`` (with its answer ``decision``), ``indexing`` and ``encoders``; ``corpus``, ``settings``,
``errors`` and ``files`` are shared by all. Importing ``service`` itself imports nothing but ``logging`` (the
client stays standard library only).
"""

import logging

__version__ = "0.4.0"

# faiss logs at INFO, as it is imported, which SIMD build it tried ("Could not load library with AVX512 support"):
# noise at every start of every command and server, whatever logging they set up (logging is the standard library).
logging.getLogger("faiss.loader").setLevel(logging.WARNING)
