"""Data-efficiency curves: fine-tunes on nested, seeded subsets of a training split,
each evaluated and drawn against training-set size next to the best prompt run.

May import: `tunelab.store`, `engine.errors`, `engine.prompts`, `engine.evaluation`,
`engine.training`, `engine.compare` (and what they import).
"""
