"""Indexes: the on-disk format (one module owns it), the vector index, the scoring settings, the build."""
