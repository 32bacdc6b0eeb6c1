"""Evaluation runs: a prompt version on a model over a dataset split, scored row by row.

`request` holds what is asked (`EvalRequest`) and reported (`EvalProgress`, `EvalResult`);
`plan` resolves a request and turns rows into scored outputs; `run` is the loop that writes
them to the store, resumes and refreshes runs; `metrics` is the metric registry; `answers`
extracts and compares final answers; `latency_probe` times rows alone at batch size 1;
`samples` generates a self-consistency run's N seeded samples per row, `voting` and
`self_consistency` score their majority vote, `stability` ranks rows by disagreement;
`run_detail` reads one run in full for a detail view.

May import: `tunelab.store`, `engine.errors`, `engine.processes`, `engine.models`,
`engine.prompts`, `engine.generation`, `engine.data`.
"""
