"""Comparing runs: the records, statistics, cost, trends, run diffs and reports.

`records` holds what `runs.compare_runs` returns; `stats` the paired tests and intervals;
`series` the per-row metric series; `cost` latency, cost and break-even; `trend` a
metric over a job's checkpoints; `run_diff` what differs between two runs; `report`
formats a comparison as Markdown, HTML or a dict.

May import: `tunelab.store`, `engine.errors`, `engine.text_diff`, `engine.models`,
`engine.prompts`, `engine.evaluation`. Never `engine.training`.
"""
