"""Running a model over rendered prompts.

`batched` generates for many rows (left padding, length buckets, OOM halving) and streams a
single generation; `decoding` decodes a batch from which finished rows leave; `controls`
turns generation settings into `generate()` arguments; `likelihood` scores label candidates
by log-likelihood; `prefix_cache` prefills the prompt prefix all rows share once; `threads`
picks torch's thread count from the cores free.

May import: `tunelab.store`, `engine.errors`, `engine.models`, `engine.prompts`.
"""
