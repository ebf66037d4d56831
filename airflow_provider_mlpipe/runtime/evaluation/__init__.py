"""The Evaluator's configuration, its fast engine and its TFMA engine."""
