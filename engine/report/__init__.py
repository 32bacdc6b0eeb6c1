"""The decision report: one page, Markdown or self-contained HTML, that says whether to
prompt or fine-tune, with the comparison, the data curve, robustness, cost and break-even.

May import: `tunelab.store`, `engine.errors`, `engine.evaluation` (run states),
`engine.compare`, `engine.curves`, `engine.robustness` (and what they import).
"""
