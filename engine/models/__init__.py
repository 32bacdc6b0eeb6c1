"""Models: where they come from, how they load, what they are made of.

`sources` parses a model argument (builtin, folder, GGUF, hub id) and registers it;
`cache` converts the built-in GGUF once and memoises weight hashes; `loading` loads a model
(with its adapter) behind an LRU; `prompt_learning` runs prefix and prompt tuning adapters
with their virtual tokens explicit; `export` writes merged or adapter models out; `diff`
compares two registered models.

May import: `tunelab.store`, `engine.errors`, `engine.processes`, `engine.text_diff`.
"""
