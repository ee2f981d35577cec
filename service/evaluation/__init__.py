"""Measuring retrieval quality: evaluation sets, metrics, the compared methods, and fitting the scoring."""
