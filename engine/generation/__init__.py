"""Running a model over rendered prompts.

`batched` generates for many rows (longest first, OOM halving) and streams a single
generation; `decoding` decodes a pool of rows that finished rows leave and waiting rows
join; `controls`
turns generation settings into `generate()` arguments; `likelihood` scores label candidates
by log-likelihood; `prefix_cache` prefills the prompt prefix all rows share once; `threads`
picks torch's thread count from the cores free.

May import: `tunelab.store`, `engine.errors`, `engine.models`, `engine.prompts`.
"""
