"""Sweeps: each hyperparameter sweep, its trials (parameters, state, metric, pruned at step)
and a chart of the metric per trial, as `tunelab sweep show` lists them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static
from textual_plotext import PlotextPlot

from tunelab.tui.widgets.nav_table import NavTable

if TYPE_CHECKING:
    from textual.app import ComposeResult

    from tunelab.engine.sweeps.records import SweepDetail


def sweep_title(detail: SweepDetail) -> str:
    """One line per sweep: state, progress, metric and where its best checkpoint is."""
    sweep = detail.sweep
    counts = ", ".join(f"{n} {state}" for state, n in sorted(detail.counts.items()))
    line = f"sweep {sweep.id} · {sweep.status} · {len(detail.trials)}/{sweep.n_trials} trials"
    line += f" ({counts})" if counts else ""
    if sweep.status == "running" and not detail.driver_alive:
        line += f" · driver gone: tunelab sweep resume {sweep.id}"
    if detail.best_model:
        line += f" · best {detail.best_model} ({', '.join(detail.labels)})"
    return line


def _value(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


class SweepChart(PlotextPlot):
    """The sweep's metric per trial: completed trials as points, the best so far as a line."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.detail: SweepDetail | None = None

    def show(self, detail: SweepDetail | None) -> None:
        self.detail = detail
        self.replot()

    def replot(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        detail = self.detail
        done = [t for t in detail.trials if t.value is not None] if detail else []
        if detail is None or not done:
            plt.title("no completed trial yet")
            self.refresh()
            return
        sweep = detail.sweep
        plt.title(f"{sweep.metric} per trial ({sweep.direction})")
        plt.xlabel("trial")
        numbers = [t.number for t in done]
        values = [t.value or 0.0 for t in done]
        plt.scatter(numbers, values, label="complete", marker="dot")
        pick = max if sweep.direction == "maximize" else min
        best = [pick(values[: i + 1]) for i in range(len(values))]
        plt.plot(numbers, best, label="best so far", marker="braille")
        self.refresh()

    def on_mount(self) -> None:
        self.replot()


class SweepsModal(ModalScreen[None]):
    """Every sweep; the highlighted one's trials and its metric per trial."""

    CSS_PATH = "sweeps.tcss"
    BINDINGS = [
        Binding("escape,q", "close", "Close", id="sweeps-close", tooltip="Close the sweeps view"),
    ]  # fmt: skip

    def __init__(self, sweeps: list[SweepDetail]) -> None:
        super().__init__()
        self.sweeps = sweeps

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box modal-wide"):
            yield Static(f"Sweeps ({len(self.sweeps)})", classes="modal-title", id="sweeps-title")
            yield NavTable(id="sweeps-table")
            yield Static("", id="sweep-summary", markup=False)
            with Horizontal(id="sweep-detail"):
                yield DataTable(id="trials-table", cursor_type="row")
                yield SweepChart(id="sweep-chart")
            yield Static("Escape closes · j/k move · `tunelab sweep show ID` prints it",
                         classes="hint", markup=False)  # fmt: skip

    def on_mount(self) -> None:
        table = self.query_one("#sweeps-table", NavTable)
        table.add_columns("Sweep", "Status", "Method", "Metric", "Trials", "Space")
        for detail in self.sweeps:
            s = detail.sweep
            table.add_row(str(s.id), s.status, s.method, s.metric,
                          f"{len(detail.trials)}/{s.n_trials}", s.space, key=str(s.id))  # fmt: skip
        table.focus()
        self.show_sweep(0)

    @on(DataTable.RowHighlighted, "#sweeps-table")
    def sweep_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_sweep(event.cursor_row)

    def show_sweep(self, index: int) -> None:
        detail = self.sweeps[index] if 0 <= index < len(self.sweeps) else None
        summary = sweep_title(detail) if detail else "No sweeps yet: `tunelab sweep` starts one."
        self.query_one("#sweep-summary", Static).update(summary)
        trials = self.query_one("#trials-table", DataTable)
        trials.clear(columns=True)
        if detail is not None:
            names = detail.param_names
            trials.add_columns("Trial", "Job", *names, "State", detail.sweep.metric, "Pruned at")
            for t in detail.trials:
                star = "★ " if t.number == detail.sweep.best_trial else ""
                trials.add_row(
                    f"{star}{t.number}", str(t.job_id or "—"),
                    *(_value(t.params.get(n, "")) for n in names), t.state,
                    f"{t.value:.4f}" if t.value is not None else "—",
                    str(t.pruned_at_step) if t.pruned_at_step is not None else "—",
                )  # fmt: skip
        self.query_one(SweepChart).show(detail)

    def action_close(self) -> None:
        self.dismiss(None)
