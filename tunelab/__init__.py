"""tunelab: prompt-engineer or fine-tune? A terminal workbench that answers with evidence."""

from __future__ import annotations

__version__ = "0.1.0"
