"""A local LLM judge: a rubric prompt version applied by a workspace model to (input,
output, reference), scores and rationales per row, pairwise judging with swapped positions.

Modules, lowest first: `rubric` (rubrics and their scale), `parsing` (the reply format and
reading it), `records` (what a judge run found), `agreement` (against human ratings),
`asking` (judge prompts, the judge model, cached replies), `scoring` (the per-row judge and
`judge_cases` / `judge_one` for callers outside a run), `pairwise`. See `docs/judge.md`.

May import: `tunelab.store`, `engine.errors`, `engine.models`, `engine.prompts`,
`engine.generation` (and what they import). Never `engine.evaluation`: evaluation calls the
judge as a metric, not the other way round.
"""
