"""Learning from real questions: the query log, feedback, the review queue grouped by meaning, and the FAQ's gaps."""
