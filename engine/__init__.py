"""The headless core of tunelab: everything both front ends do, and nothing that draws.

Package map, lowest first; a package may import only those above it (enforced by
`tests/test_layers.py`):

- `errors`: `BadInputError` (the user can fix it) and `EngineError` (it failed).
- `processes`: is a recorded worker process still alive and still the same one.
- `text_diff`: word, line and key-by-key diffs as data.
- `data`: importing datasets into the store.
- `models`: model sources, the built-in model cache, loading, export, model diffs.
- `prompts`: generation settings, template rendering, the text form of a version, diffs.
- `generation`: batched and streaming generation, generation controls, label likelihood.
- `judge`: a rubric applied by a workspace model, per row or pairwise.
- `evaluation`: requests, plans, the run loop, metrics.
- `feedback`: SFT and DPO exports of ratings, corrections and preferences (beside
  `evaluation`; neither imports the other).
- `training`: config, data, steps, checkpoints, the loop, detached jobs and their worker.
- `compare`: comparison records, statistics, cost, trends, run diffs, reports.
- `optimize`: prompt search over demonstrations, instructions and scoring.
- `curves`, `robustness`, `sweeps`: data-efficiency curves, perturbation suites and
  hyperparameter sweeps, each a set of jobs and runs.
- `report`: the one-page decision report.
- `demo`: the built-in demo workspace.
- `api`: the typed API (`Engine`, `EngineProtocol`) the TUI and tests depend on.

The engine never imports textual; torch and transformers load only inside the functions
that run models, so importing any engine module is cheap.
"""
