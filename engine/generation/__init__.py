"""Running a model over rendered prompts.

`batched` generates for many rows (left padding, length buckets, OOM halving) and streams a
single generation; `controls` turns generation settings into `generate()` arguments;
`likelihood` scores label candidates by log-likelihood.

May import: `tunelab.store`, `engine.errors`, `engine.models`, `engine.prompts`.
"""
