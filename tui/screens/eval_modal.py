"""The form that starts an evaluation: prompt version, model, dataset split and a row limit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Select, Static

from tunelab.engine.api.facade import EvalSpec

if TYPE_CHECKING:
    from textual.app import ComposeResult


class EvalModal(ModalScreen[EvalSpec | None]):
    """Pick what to evaluate; ctrl+s or Enter starts it, Escape cancels."""

    BINDINGS = [
        Binding("ctrl+s", "start", "Start", id="eval-start", tooltip="Start the evaluation"),
        Binding("escape", "cancel", "Cancel", id="eval-cancel", tooltip="Close without starting"),
    ]

    def __init__(
        self,
        prompt_refs: list[str],
        models: list[str],
        datasets: dict[str, list[str]],
        default_ref: str | None = None,
        default_model: str | None = None,
        default_split: str | None = None,
        default_limit: str = "",
    ) -> None:
        super().__init__()
        self.prompt_refs = prompt_refs
        self.models = models
        self.splits = [f"{name}/{split}" for name, splits in datasets.items() for split in splits]
        self.default_ref = default_ref
        self.default_model = default_model
        """Preselected choices (the last evaluation's, through the settings); unknown ones are
        ignored."""
        self.default_split = default_split
        self.default_limit = default_limit

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box", id="eval-form"):
            yield Static("New evaluation", classes="modal-title")
            with Horizontal(classes="form-row"):
                yield Label("Prompt")
                yield Select[str]([(r, r) for r in self.prompt_refs], id="eval-prompt",
                                  allow_blank=False, value=self._default_ref())  # fmt: skip
            with Horizontal(classes="form-row"):
                yield Label("Model")
                yield Select[str]([(m, m) for m in self.models], id="eval-model",
                                  allow_blank=False, value=self._default_model())  # fmt: skip
            with Horizontal(classes="form-row"):
                yield Label("Dataset/split")
                yield Select[str]([(s, s) for s in self.splits], id="eval-split",
                                  allow_blank=False, value=self._default_split())  # fmt: skip
            with Horizontal(classes="form-row"):
                yield Label("Row limit")
                yield Input(self.default_limit, placeholder="all rows", id="eval-limit",
                            type="integer")  # fmt: skip
            yield Static("ctrl+s or Enter starts · Escape cancels", classes="hint")

    def _default_ref(self) -> str:
        if self.default_ref in self.prompt_refs:
            return str(self.default_ref)
        return self.prompt_refs[0]

    def _default_model(self) -> str:
        return self.default_model if self.default_model in self.models else self.models[0]

    def _default_split(self) -> str:
        if self.default_split in self.splits:
            return str(self.default_split)
        tests = [s for s in self.splits if s.endswith("/test")]
        return (tests or self.splits)[0]

    @on(Input.Submitted)
    def action_start(self) -> None:
        split_value = str(self.query_one("#eval-split", Select).value)
        dataset, split = split_value.rsplit("/", 1)
        limit_text = self.query_one("#eval-limit", Input).value.strip()
        self.dismiss(
            EvalSpec(
                prompt_ref=str(self.query_one("#eval-prompt", Select).value),
                model=str(self.query_one("#eval-model", Select).value),
                dataset=dataset,
                split=split,
                limit=int(limit_text) if limit_text else None,
            )
        )

    def action_cancel(self) -> None:
        self.dismiss(None)
