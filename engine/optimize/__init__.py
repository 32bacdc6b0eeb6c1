"""Automatic prompt optimization: a search over demonstrations, instructions and scoring.

`space` holds the search space and what a candidate becomes as a prompt; `strategies` the
searches (random with successive halving, Optuna TPE with pruning) as plain functions;
`scorer` turns a candidate into a prompt version and a validation score through
`evaluation.run.evaluate`; `proposals` asks a workspace model for instruction variants;
`search` is the entry point that labels the best `optimized`; `history` reads a search back;
`job` and `worker` run a search as a queued job (kind `optimize`) in the shared job queue;
`remote` submits one to Slurm and `remote_worker` runs it on a compute node without the
database (through `training`'s job folder, spec and events).

May import: `tunelab.store`, `engine.errors`, `engine.processes`, `engine.prompts`,
`engine.evaluation`, `engine.training` (Slurm submission, job-folder events) and what they
import. Never `engine.compare`.
Optuna loads only inside the TPE strategy.
"""
