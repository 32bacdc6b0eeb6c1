"""Compare: the verdict with CIs and significance, fixed/broken examples, word diffs and cost."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Input, Static, TabbedContent, TabPane

from tunelab.engine.compare.report import cost_lines, fmt_p
from tunelab.tui.messages import ExampleDetailLoaded, OutputsDiffed, RunsCompared
from tunelab.tui.screens.base import TunelabScreen
from tunelab.tui.screens.blind_ab import PreferencesTallied
from tunelab.tui.widgets.nav_table import NavTable

if TYPE_CHECKING:
    from textual.app import ComposeResult
    from textual.worker import Worker

    from tunelab.engine.compare.records import ChangedRow, Comparison
    from tunelab.engine.text_diff import WordDiffSegment

EXAMPLE_FILTERS = ("changed", "fixed", "broken", "all")


def _num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def headline(comparison: Comparison) -> str:
    """The verdict line: the engine's verdict, which already names both runs and the metric."""
    return comparison.verdict


def counts_text(comparison: Comparison) -> str:
    """Fixed and broken over every compared row (the table lists only a few of each), the
    same numbers `tunelab compare` prints."""
    counts = comparison.pairs[0].counts if comparison.pairs else None
    if counts is None:
        return "no right/wrong score"
    return f"fixed {counts.fixed} · broken {counts.broken}"


def diff_text(segments: list[WordDiffSegment], removed: str, added: str) -> Text:
    """Removed words as [-struck-], added ones as {+underlined+} (git's word-diff marks, so the
    diff reads without colour too), in the theme's colours."""
    text = Text()
    for segment in segments:
        if segment.op == "equal":
            text.append(segment.text)
        elif segment.op == "delete":
            text.append(f"[-{segment.text}-]", style=f"strike {removed}")
        else:
            text.append(f"{{+{segment.text}+}}", style=f"underline {added}")
    return text


class CompareScreen(TunelabScreen):
    """Is run B better than run A, by how much, on which examples, and at what cost?"""

    CSS_PATH = "compare.tcss"

    SCREEN_TITLE = "Compare"
    AUTO_FOCUS = "#compare-metrics"
    BINDINGS = [
        Binding("slash", "focus_runs", "Runs", id="compare-pick",
                tooltip="Type the run ids to compare, e.g. 3, 7"),
        Binding("f", "cycle_filter", "Filter", id="compare-filter",
                tooltip="Show changed, fixed, broken or all examples"),
        Binding("t", "next_tab", "Next tab", id="compare-next-tab",
                tooltip="Cycle Verdict, Examples and Cost"),
        Binding("enter", "open_example", "Example", id="compare-example",
                tooltip="The selected example in full: input, both outputs, word diff"),
        Binding("w", "word_diff", "Word diff", id="compare-diff",
                tooltip="Word-level diff of the selected example's outputs"),
        Binding("escape", "back", "Back", id="compare-back", tooltip="Back to the verdict table"),
        Binding("b", "blind_ab", "Blind A/B", id="compare-blind-ab",
                tooltip="Judge the baseline and last run's outputs blind, sides shuffled"),
    ]  # fmt: skip

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.comparison: Comparison | None = None
        self.example_filter = EXAMPLE_FILTERS[0]
        self.verdict_lines: list[str] = []
        self.preference_lines: list[str] = []
        """Blind A/B win rates of the compared runs (`engine.feedback.preferences`)."""

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        with Vertical(id="compare"):
            yield Input(placeholder="Run ids to compare, e.g. 1, 3 (Enter)", id="compare-runs")
            yield Static("Pick two or more runs: mark them in Runs (space, then c) or type ids.",
                         id="compare-verdict", markup=False)  # fmt: skip
            with TabbedContent(id="compare-tabs"):
                with TabPane("Verdict", id="tab-verdict"):
                    yield NavTable(id="compare-metrics")
                with TabPane("Examples", id="tab-examples"):
                    yield Static("", id="compare-filter-label", classes="hint")
                    yield NavTable(id="compare-examples")
                    with VerticalScroll(id="compare-diff-scroll", classes="pane"):
                        yield Static("", id="compare-diff")
                with TabPane("Cost", id="tab-cost"):
                    yield Static("", id="compare-cost", markup=False)
        yield from self.compose_footer()

    def compare(self, run_ids: list[int]) -> None:
        """Compare these runs (called by the app when Runs asks for a comparison)."""
        self.query_one("#compare-runs", Input).value = ", ".join(str(i) for i in run_ids)
        self.query_one("#compare-verdict", Static).update("Comparing…")
        self.run_comparison(run_ids)

    @on(Input.Submitted, "#compare-runs")
    def runs_typed(self, event: Input.Submitted) -> None:
        ids = [int(x) for x in re.findall(r"\d+", event.value)]
        if len(ids) < 2:
            self.notify("Type at least two run ids", severity="warning")
            return
        self.compare(ids)
        self.query_one("#compare-metrics", NavTable).focus()

    @work(thread=True, exclusive=True, exit_on_error=False, group="compare", description="Compare")
    def run_comparison(self, run_ids: list[int]) -> None:
        # Prices come from the workspace config (`tunelab config`), as for `tunelab compare`.
        comparison = self.engine.compare_runs(run_ids)
        robustness = self.engine.robustness_contrast([r.id for r in comparison.runs])
        self.post_message(RunsCompared(comparison, tuple(robustness)))
        self.tally_preferences([r.id for r in comparison.runs])

    def worker_failed(self, worker: Worker[object]) -> None:
        # "Comparing…" ends in the reason, beside the notification, never stays.
        if worker.group == "compare":
            reason = str(worker.error or "unknown error").strip().splitlines()
            self.query_one("#compare-verdict", Static).update(
                f"Comparison failed: {reason[0] if reason else type(worker.error).__name__}"
            )

    @work(thread=True, exclusive=True, exit_on_error=False, group="ab", description="Blind A/B")
    def tally_preferences(self, run_ids: list[int]) -> None:
        from tunelab.engine.feedback.preferences import tally_line

        lines = [tally_line(t) for t in self.engine.preference_tallies(run_ids)]
        self.post_message(PreferencesTallied(run_ids, lines))

    @on(PreferencesTallied)
    def preferences_tallied(self, event: PreferencesTallied) -> None:
        if self.comparison is not None and event.run_ids == [r.id for r in self.comparison.runs]:
            self.preference_lines = event.lines
            self.show_verdict()

    def show_verdict(self) -> None:
        lines = [*self.verdict_lines, *self.preference_lines]
        self.query_one("#compare-verdict", Static).update("\n".join(lines))

    def action_blind_ab(self) -> None:
        """Judge the baseline against the last compared run, blind (a fresh seed each time)."""
        import random

        from tunelab.tui.screens.blind_ab import BlindABModal

        if self.comparison is None or len(self.comparison.runs) < 2:
            self.notify("Compare two runs first (/ to type their ids)", severity="warning")
            return
        runs = [r.id for r in self.comparison.runs]
        seed = random.SystemRandom().randrange(1_000_000)

        def judged(stored: int | None) -> None:
            if stored:
                self.tally_preferences(runs)

        self.app.push_screen(BlindABModal(self.engine, runs[0], runs[-1], seed), judged)

    @on(RunsCompared)
    def show_comparison(self, event: RunsCompared) -> None:
        comparison = self.comparison = event.comparison
        self.verdict_lines = [headline(comparison) or "No verdict", *event.robustness]
        self.preference_lines = []
        self.show_verdict()
        table = self.query_one("#compare-metrics", NavTable)
        table.clear(columns=True)
        short = [f"#{r.id}" for r in comparison.runs]
        table.add_columns("Metric", *short, "Δ", "95% CI", "p", "Sig.")
        for metric in comparison.metrics:
            ci = f"[{_num(metric.ci_low)}, {_num(metric.ci_high)}]"
            table.add_row(
                metric.name, *(_num(v) for v in metric.values), _num(metric.delta), ci,
                fmt_p(metric.p_value), "yes" if metric.significant else "no", key=metric.name,
            )  # fmt: skip
        self.query_one("#compare-cost", Static).update(
            "\n".join(
                [
                    *(f"{i}: {label}" for i, label in zip(short, comparison.labels, strict=False)),
                    "",
                    *cost_lines(comparison),
                ]
            )
        )
        self.show_examples()

    def filtered_examples(self) -> list[ChangedRow]:
        if self.comparison is None:
            return []
        wanted = self.example_filter
        return [
            e for e in self.comparison.examples
            if wanted == "all" or e.change == wanted
            or (wanted == "changed" and e.change in ("fixed", "broken", "differs"))
        ]  # fmt: skip

    def show_examples(self) -> None:
        table = self.query_one("#compare-examples", NavTable)
        table.clear(columns=True)
        table.add_columns("Row", "Change", "Reference", "First run", "Last run")
        examples = self.filtered_examples()
        for example in examples:
            first = example.outputs[0] if example.outputs else ""
            last = example.outputs[-1] if example.outputs else ""
            table.add_row(
                str(example.row_idx), example.change, _short(example.reference or ""),
                _short(first), _short(last), key=str(example.row_idx),
            )  # fmt: skip
        counts = counts_text(self.comparison) if self.comparison is not None else ""
        self.query_one("#compare-filter-label", Static).update(
            f"showing {self.example_filter} ({len(examples)}) · {counts}"
            " · Enter opens one · f changes filter · w word diff"
        )

    def action_cycle_filter(self) -> None:
        index = EXAMPLE_FILTERS.index(self.example_filter)
        self.example_filter = EXAMPLE_FILTERS[(index + 1) % len(EXAMPLE_FILTERS)]
        self.show_examples()

    def selected_example(self) -> ChangedRow | None:
        key = self.query_one("#compare-examples", NavTable).selected_key()
        return next((e for e in self.filtered_examples() if str(e.row_idx) == key), None)

    @on(DataTable.RowSelected, "#compare-examples")
    def action_open_example(self) -> None:
        example = self.selected_example()
        if example is not None and self.comparison is not None:
            self.load_example(self.comparison, example.row_idx)

    @work(thread=True, exclusive=True, exit_on_error=False, group="detail", description="Example")
    def load_example(self, comparison: Comparison, row_idx: int) -> None:
        self.post_message(ExampleDetailLoaded(self.engine.example_detail(comparison, row_idx)))

    @on(ExampleDetailLoaded)
    def example_loaded(self, event: ExampleDetailLoaded) -> None:
        from tunelab.tui.screens.example_detail import ExampleDetailModal

        theme = self.app.current_theme
        segments = event.detail.diff.segments
        drawn = diff_text(segments, theme.error or "red", theme.success or "green")
        self.app.push_screen(ExampleDetailModal(event.detail, drawn))

    def action_word_diff(self) -> None:
        example = self.selected_example()
        if example is None or len(example.outputs) < 2:
            return
        self.query_one("#compare-tabs", TabbedContent).active = "tab-examples"
        self.diff_outputs(example.row_idx, example.outputs[0], example.outputs[-1])

    @work(thread=True, exclusive=True, exit_on_error=False, group="diff", description="Word diff")
    def diff_outputs(self, row_idx: int, before: str, after: str) -> None:
        self.post_message(OutputsDiffed(row_idx, self.engine.diff_words(before, after)))

    @on(OutputsDiffed)
    def show_diff(self, event: OutputsDiffed) -> None:
        text = Text(f"row {event.row_idx}: ", style="bold")
        theme = self.app.current_theme
        text.append_text(diff_text(event.segments, theme.error or "red", theme.success or "green"))
        self.query_one("#compare-diff", Static).update(text)

    def action_next_tab(self) -> None:
        tabs = self.query_one("#compare-tabs", TabbedContent)
        order = ["tab-verdict", "tab-examples", "tab-cost"]
        tabs.active = (
            order[(order.index(tabs.active) + 1) % len(order)] if tabs.active in order else order[0]
        )

    def action_focus_runs(self) -> None:
        self.query_one("#compare-runs", Input).focus()

    def action_back(self) -> None:
        self.query_one("#compare-tabs", TabbedContent).active = "tab-verdict"
        self.query_one("#compare-metrics", NavTable).focus()


def _short(text: str, width: int = 24) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
