"""Training and validation loss curves, drawn with textual-plotext from the job's metric points."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from textual_plotext import PlotextPlot

if TYPE_CHECKING:
    from tunelab.store import MetricPoint


class TrainingCurves(PlotextPlot):
    """One line per loss series (train_loss, val_loss), step on the x axis.

    Other metrics (learning rate, tokens/s) have other scales, so they are left out.
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.series: dict[str, list[tuple[int, float]]] = {}

    def show_points(self, points: list[MetricPoint]) -> None:
        series: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for point in points:
            if "loss" in point.name:
                series[point.name].append((point.step, point.value))
        if dict(series) == self.series:
            return
        self.series = dict(series)
        self.replot()

    def replot(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("loss by step" if self.series else "no metrics yet")
        plt.xlabel("step")
        for name, values in sorted(self.series.items()):
            plt.plot([s for s, _ in values], [v for _, v in values], label=name, marker="braille")
        self.refresh()

    def on_mount(self) -> None:
        self.replot()
