"""How hard the prompt side tried: the search behind a run's prompt version, if any.

A verdict "fine-tuning wins" reads differently after 48 prompt candidates than against one
hand-written prompt. A searched version's commit message (`prompts.search_note`) names its
seed and the split that scored it; the candidates are the versions carrying the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunelab.engine.prompts.search_note import parse_note
from tunelab.store import Run, Store


@dataclass(frozen=True)
class PromptEffort:
    candidates: int
    """Scored candidates of the search that made the run's prompt; 0: nobody searched."""
    seed_ref: str | None = None
    selected_on: str | None = None
    """`dataset/split` whose score chose the prompt."""

    def text(self) -> str:
        if not self.candidates:
            return "one hand-written prompt"
        return (
            f"best of {self.candidates} prompt candidates searched from {self.seed_ref}, "
            f"selected on {self.selected_on}"
        )


def prompt_effort(store: Store, run: Run) -> PromptEffort:
    version = store.get_prompt_version_by_id(run.prompt_version_id)
    note = parse_note(version.message)
    if note is None or note.split is None:
        return PromptEffort(0)
    notes = [parse_note(v.message) for v in store.list_prompt_versions(version.prompt_name)]
    scored = [n for n in notes if n is not None and n.seed_ref == note.seed_ref and n.split]
    return PromptEffort(len(scored), note.seed_ref, f"{note.dataset}/{note.split}")


def selection_note(run: Run, effort: PromptEffort) -> str | None:
    """A warning when a run is scored on the very split that chose its prompt."""
    if effort.selected_on != f"{run.dataset_name}/{run.split}":
        return None
    return (
        f"run {run.id}'s prompt was selected on {effort.selected_on}, the rows compared "
        "here: its score is optimistic, not a held-out result; compare on a test split"
    )
