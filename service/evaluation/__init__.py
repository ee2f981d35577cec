"""Measuring: evaluation sets, retrieval metrics, the compared methods, fitting the scoring, and (``serving``)
starting the production server under load for the speed and fault benchmarks."""
