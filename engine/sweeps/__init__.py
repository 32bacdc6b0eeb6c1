"""Hyperparameter sweeps: an Optuna study whose trials are tunelab training jobs, pruned
through the validation metric the trainer reports.

`space` parses the search space onto `TrainingConfig` fields; `study` is the Optuna side (the
journal-file study, pruners, the pruning decision); `launch` checks, stores and starts a sweep
and resumes it; `driver` is the detached process that runs the trials; `records` is what the
front ends show.

May import: `tunelab.store`, `engine.errors`, `engine.training`, `engine.compare` (and
what they import). Optuna loads only inside the functions that run a study.
"""
