"""A local LLM judge: a rubric prompt version applied by a workspace model to (input,
output, reference), scores and rationales per row, pairwise judging with swapped positions.

May import: `tunelab.store`, `engine.errors`, `engine.models`, `engine.prompts`,
`engine.generation` (and what they import). Never `engine.evaluation`: evaluation calls the
judge as a metric, not the other way round.
"""
