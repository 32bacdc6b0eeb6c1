"""Hyperparameter sweeps: an Optuna study whose trials are tunelab training jobs, pruned
through the validation metric the trainer reports.

May import: `tunelab.store`, `engine.errors`, `engine.training`, `engine.compare` (and
what they import). Optuna loads only inside the functions that run a study.
"""
