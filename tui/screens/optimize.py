"""Prompt optimization from the Prompts screen: the form that starts a search from the
selected version, and the search's view (validation score per candidate over the search, the
best candidate's diff against the seed, its validation/test gap), as `tunelab optimize
show` prints them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual import on
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label, Select, Static
from textual_plotext import PlotextPlot

from tunelab.engine.errors import BadInputError
from tunelab.engine.optimize.search import OptimizeRequest
from tunelab.engine.optimize.space import SearchSpace
from tunelab.engine.optimize.strategies import STRATEGIES

if TYPE_CHECKING:
    from textual.app import ComposeResult

    from tunelab.engine.api.types import OptimizeProgress, SearchHistory


@dataclass
class SearchProgressed(Message):
    """A running search scored one more candidate on some validation rows."""

    progress: OptimizeProgress


@dataclass
class SearchLoaded(Message):
    """A search was read back (after it ran, or on request), with the best's diff."""

    history: SearchHistory
    diff: list[str]


def progress_line(progress: OptimizeProgress) -> str:
    """The one-line state of a running search, as the CLI prints it after each evaluation."""
    e = progress.evaluation
    best = "—" if progress.best_score is None else f"{progress.best_score:.4f}"
    return (
        f"[{progress.evaluations}] {e.version_ref} on {e.rows} rows: {e.score:.4f} · "
        f"candidates {progress.candidates}/{progress.budget}, best {best}"
    )


def gap_line(history: SearchHistory) -> str:
    if history.best_ref is None or history.best_validation is None:
        return "no best candidate yet (the search has not scored one on the whole split)"
    line = f"best {history.best_ref}: validation {history.metric} {history.best_validation:.4f}"
    if history.gap is not None and history.best_test is not None:
        return f"{line} · test {history.best_test:.4f} · validation/test gap {history.gap:+.4f}"
    return f"{line} · not evaluated on test yet"


class OptimizeModal(ModalScreen[OptimizeRequest | None]):
    """What to search with: dataset, budget and strategy; ctrl+s or Enter starts it."""

    BINDINGS = [
        Binding("ctrl+s", "start", "Start", id="optimize-start",
                tooltip="Start the prompt search from the selected version"),
        Binding("escape", "cancel", "Cancel", id="optimize-cancel",
                tooltip="Close without starting"),
    ]  # fmt: skip

    def __init__(self, seed_ref: str, datasets: dict[str, bool], model: str = "builtin") -> None:
        """`datasets`: name → whether it is classification with labels (likelihood scoring)."""
        super().__init__()
        self.seed_ref = seed_ref
        self.datasets = datasets
        self.model = model

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box", id="optimize-form"):
            yield Static(f"Optimize {self.seed_ref}", classes="modal-title")
            with Horizontal(classes="form-row"):
                yield Label("Dataset")
                yield Select[str]([(d, d) for d in self.datasets], id="optimize-dataset",
                                  allow_blank=False)  # fmt: skip
            with Horizontal(classes="form-row"):
                yield Label("Budget")
                yield Input("16", id="optimize-budget", type="integer")
            with Horizontal(classes="form-row"):
                yield Label("Strategy")
                yield Select[str]([(s, s) for s in STRATEGIES], id="optimize-strategy",
                                  allow_blank=False)  # fmt: skip
            yield Static(
                "train split demonstrations, scored on validation · ctrl+s or Enter starts · "
                "Escape cancels",
                classes="hint",
            )

    @on(Input.Submitted)
    def action_start(self) -> None:
        dataset = str(self.query_one("#optimize-dataset", Select).value)
        budget_text = self.query_one("#optimize-budget", Input).value.strip() or "0"
        scoring = "likelihood" if self.datasets.get(dataset) else "generate"
        try:
            request = OptimizeRequest(
                prompt=self.seed_ref,
                dataset=dataset,
                model=self.model,
                budget=int(budget_text),
                strategy=str(self.query_one("#optimize-strategy", Select).value),
                space=SearchSpace(scorings=(scoring,)),
            )
        except (BadInputError, ValueError) as exc:
            self.notify(str(exc), severity="error")
            return
        self.dismiss(request)

    def action_cancel(self) -> None:
        self.dismiss(None)


class SearchChart(PlotextPlot):
    """Validation score per evaluation, in search order, and the best full-split score so far."""

    def __init__(self, history: SearchHistory, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.history = history

    def on_mount(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        points = self.history.points
        if not points:
            plt.title("no candidate scored yet")
            self.refresh()
            return
        plt.title(f"validation {self.history.metric} per evaluation")
        plt.xlabel("evaluation")
        plt.scatter([p.order for p in points], [p.score for p in points], label="scored",
                    marker="dot")  # fmt: skip
        full = max(p.rows for p in points)
        best: list[float] = []
        orders: list[int] = []
        for p in points:
            if p.rows == full:
                best.append(max([*best[-1:], p.score]))
                orders.append(p.order)
        if orders:
            plt.plot(orders, best, label="best on the whole split", marker="braille")
        self.refresh()


class SearchModal(ModalScreen[None]):
    """A search's evaluations (table and plot), the best's diff and its validation/test gap."""

    CSS_PATH = "optimize.tcss"
    BINDINGS = [
        Binding("escape,q", "close", "Close", id="search-close", tooltip="Close the search view"),
    ]

    def __init__(self, history: SearchHistory, diff: list[str]) -> None:
        super().__init__()
        self.history = history
        self.diff = diff

    def compose(self) -> ComposeResult:
        history = self.history
        with Vertical(classes="modal-box", id="search-view"):
            title = f"Search from {history.seed_ref}"
            if history.split:
                title += f" · selected on {history.dataset}/{history.split}"
            yield Static(title, classes="modal-title")
            yield Static(gap_line(history), id="search-gap")
            with Horizontal(id="search-body"):
                yield DataTable(id="search-points", cursor_type="row")
                yield SearchChart(history, id="search-chart")
            with VerticalScroll(id="search-diff-box"):
                text = "\n".join(self.diff) if self.diff else "(no best candidate to diff)"
                yield Static(text, id="search-diff", markup=False)

    def on_mount(self) -> None:
        table = self.query_one("#search-points", DataTable)
        table.add_columns("#", "version", "rows", f"validation {self.history.metric}")
        for p in self.history.points:
            name = p.version_ref + (" (seed)" if p.seed else "")
            if p.version_ref == self.history.best_ref:
                name += " ★"
            table.add_row(str(p.order), name, str(p.rows), f"{p.score:.4f}")

    def action_close(self) -> None:
        self.dismiss(None)
