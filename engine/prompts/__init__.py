"""Prompt versions as the model sees them.

`settings` holds the generation settings record and its parsing (logit bias included);
`templates` renders a version for a dataset row (sandboxed Jinja2, few-shot, chat or plain,
chain of thought); `text` is the editable text form of a version; `diff` compares two
versions.

May import: `tunelab.store`, `engine.errors`, `engine.text_diff`, `engine.models`.
"""
