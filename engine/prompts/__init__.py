"""Prompt versions as the model sees them.

`settings` holds the generation settings record and its parsing (logit bias included);
`sandbox` bounds template rendering in time and memory; `templates` renders a version for a
dataset row (through `RowRenderer`, the one renderer of the Playground, `generate` and eval;
few-shot, chat or plain, chain of thought); `text` is the editable text form of a version;
`diff` compares two versions; `search_note` the commit message a prompt search writes on
each candidate.

May import: `tunelab.store`, `engine.errors`, `engine.text_diff`, `engine.models`.
"""
