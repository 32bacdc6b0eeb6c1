"""Comparing runs: the records, statistics, cost, trends, run diffs and reports.

`records` holds what `runs.compare_runs` returns; `changes` the fixed/broken rule every view
uses; `stats` the paired tests and the intervals that agree with them;
`series` the per-row metric series; `cost` latency, cost and break-even; `trend` a
metric over a job's checkpoints; `run_diff` what differs between two runs; `report`
formats a comparison as Markdown, HTML or a dict; `search_effort` says how many prompt
candidates a search tried for a run's prompt, and which split chose it; `example_detail`
one compared row in full (input, both outputs, word diff).

May import: `tunelab.store`, `engine.errors`, `engine.text_diff`, `engine.models`,
`engine.prompts`, `engine.evaluation`. Never `engine.training`.
"""
