"""Metric trend: one metric across a prompt's versions or a job's checkpoints, on one chart.

Opened with `T` from Prompts (the selected prompt) and from Fine-tune (the selected job). The
modal loads every metric's trend once, in a worker, so `m` switches metric at once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from textual import on, work
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Footer, Static
from textual.worker import Worker, WorkerState
from textual_plotext import PlotextPlot

from tunelab.tui.widgets.nav_table import NavTable

if TYPE_CHECKING:
    from textual.app import ComposeResult

    from tunelab.engine.api.facade import EngineProtocol
    from tunelab.engine.api.types import Trend, TrendRequest


def trend_title(trend: Trend) -> str:
    """What the chart holds fixed, so two trends are never mistaken for one another."""
    fixed = [f"{trend.dataset}/{trend.split}" if trend.dataset else "no matching run"]
    if trend.model:
        fixed.append(f"model {trend.model}")
    drawn = sum(p.value is not None for p in trend.points)
    return (
        f"{trend.metric} across {trend.subject} · {' · '.join(fixed)} · "
        f"{drawn} of {len(trend.points)} points"
    )


SOURCES = {"run": "evaluation", "training": "training eval", "none": "—"}
"""Where a point's value came from, as the table says it."""


class TrendPlot(PlotextPlot):
    """The trend as a line over its points in order; points without a value are left out."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.trend: Trend | None = None

    def show_trend(self, trend: Trend) -> None:
        self.trend = trend
        self.replot()

    def replot(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        trend = self.trend
        if trend is None:
            plt.title("loading…")
            self.refresh()
            return
        drawn = [(i, p.value) for i, p in enumerate(trend.points) if p.value is not None]
        plt.title(trend.metric if drawn else f"no {trend.metric} values yet")
        if drawn:
            plt.plot([i for i, _ in drawn], [v for _, v in drawn], marker="braille")
            plt.scatter([i for i, _ in drawn], [v for _, v in drawn], marker="dot")
            plt.xticks(list(range(len(trend.points))), [p.label for p in trend.points])
        self.refresh()

    def on_mount(self) -> None:
        self.replot()


class TrendModal(ModalScreen[None]):
    """A chosen metric across a prompt's versions or a job's checkpoints (`tunelab trend`)."""

    CSS_PATH = "trend.tcss"
    BINDINGS = [
        Binding("m", "next_metric", "Metric", id="trend-metric",
                tooltip="Draw the next metric this prompt or job has"),
        Binding("escape,q", "close", "Close", id="trend-close", tooltip="Close the trend"),
    ]  # fmt: skip

    @dataclass
    class Loaded(Message):
        """Every metric's trend arrived, the requested (or main) metric first."""

        trends: list[Trend]

    def __init__(self, engine: EngineProtocol, request: TrendRequest) -> None:
        super().__init__()
        self.engine = engine
        self.request = request
        self.trends: list[Trend] = []
        self.shown = 0
        """Index in `trends` of the metric on the chart."""

    def compose(self) -> ComposeResult:
        with Vertical(id="trend-box"):
            yield Static("Loading the trend…", id="trend-title", markup=False)
            yield TrendPlot(id="trend-plot")
            yield NavTable(id="trend-points")
            yield Static("m next metric · Escape closes", classes="hint")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#trend-points", NavTable).add_columns("Point", "Value", "From", "Run")
        self.load_trends(self.request)

    @work(thread=True, exclusive=True, exit_on_error=False, group="trend", description="Trend")
    def load_trends(self, request: TrendRequest) -> None:
        first = self.engine.metric_trend(request)
        others = [m for m in self.engine.trend_metrics(request) if m != first.metric]
        trends = [first, *(self.engine.metric_trend(replace(request, metric=m)) for m in others)]
        self.post_message(self.Loaded(trends))

    @on(Loaded)
    def trends_loaded(self, event: Loaded) -> None:
        self.trends = event.trends
        self.shown = 0
        self.show_current()

    @on(Worker.StateChanged)
    def trend_failed(self, event: Worker.StateChanged) -> None:
        """A bad prompt or job, or one without runs: say why and close."""
        if event.state is WorkerState.ERROR and event.worker.error is not None:
            self.notify(str(event.worker.error), title="Trend", severity="error", timeout=8)
            self.dismiss(None)

    def show_current(self) -> None:
        trend = self.trends[self.shown]
        self.query_one("#trend-title", Static).update(trend_title(trend))
        self.query_one("#trend-plot", TrendPlot).show_trend(trend)
        table = self.query_one("#trend-points", NavTable)
        table.clear()
        for point in trend.points:
            table.add_row(
                point.label, "—" if point.value is None else f"{point.value:.3f}",
                SOURCES.get(point.source, point.source),
                "—" if point.run_id is None else str(point.run_id), key=point.label,
            )  # fmt: skip

    def action_next_metric(self) -> None:
        if len(self.trends) > 1:
            self.shown = (self.shown + 1) % len(self.trends)
            self.show_current()

    def action_close(self) -> None:
        self.dismiss(None)
