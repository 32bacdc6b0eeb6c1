"""Report: the one-page decision report (`tunelab report`), rendered from the same Markdown."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual import on, work
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Markdown, Static

from tunelab.engine.report.markdown import render_markdown
from tunelab.tui.screens.base import TunelabScreen

if TYPE_CHECKING:
    from textual.app import ComposeResult
    from textual.worker import Worker

    from tunelab.engine.report.records import DecisionReport

WAITING = "Building the report…"


@dataclass(frozen=True)
class ReportRequest:
    """What the report weighs: a dataset, a prompt run, a fine-tuned run (None: the best)."""

    dataset: str | None = None
    prompt_run: int | None = None
    finetune_run: int | None = None


def parse_request(text: str) -> ReportRequest:
    """'emotion', '3 7' (prompt run, fine-tuned run), '3', 'emotion 3' or '' (the best pair)."""
    words = re.split(r"[\s,]+", text.strip())
    runs = [int(w) for w in words if w.isdigit()]
    names = [w for w in words if w and not w.isdigit()]
    return ReportRequest(
        dataset=names[0] if names else None,
        prompt_run=runs[0] if runs else None,
        finetune_run=runs[1] if len(runs) > 1 else None,
    )


class ReportScreen(TunelabScreen):
    """Prompt or fine-tune? The verdict, data curve, robustness, cost and break-even."""

    CSS_PATH = "report.tcss"

    SCREEN_TITLE = "Report"
    AUTO_FOCUS = "#report-scroll"
    BINDINGS = [
        Binding("slash", "focus_request", "Choose", id="report-pick",
                tooltip="Type a dataset, or a prompt run and a fine-tuned run id (e.g. 3 7)"),
        Binding("r", "rebuild", "Rebuild", id="report-rebuild",
                tooltip="Build the report again from the workspace as it is now"),
    ]  # fmt: skip

    @dataclass
    class ReportBuilt(Message):
        report: DecisionReport

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.request = ReportRequest()
        self.report: DecisionReport | None = None

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        with Vertical(id="report"):
            yield Input(
                placeholder="Dataset, or prompt run and fine-tuned run ids, e.g. 3 7 (Enter); "
                "empty: the best pair",
                id="report-request",
            )
            yield Static(WAITING, id="report-status", markup=False)
            with VerticalScroll(id="report-scroll"):
                yield Markdown("", id="report-page")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.build(self.request)

    def build(self, request: ReportRequest) -> None:
        self.request = request
        self.query_one("#report-status", Static).update(WAITING)
        self.build_report(request)

    @work(thread=True, exclusive=True, exit_on_error=False, group="report", description="Report")
    def build_report(self, request: ReportRequest) -> None:
        report = self.engine.decision_report(
            dataset=request.dataset,
            prompt_run=request.prompt_run,
            finetune_run=request.finetune_run,
        )
        self.post_message(self.ReportBuilt(report))

    @on(ReportBuilt)
    async def show_report(self, event: ReportBuilt) -> None:
        self.report = event.report
        verdict = event.report.about("verdict")
        self.query_one("#report-status", Static).update(
            verdict[0].text if verdict else "No verdict"
        )
        await self.query_one("#report-page", Markdown).update(render_markdown(event.report))

    def worker_failed(self, worker: Worker[object]) -> None:
        # The engine's one-line reason (no finished pair, runs on different splits) stays
        # on the screen beside the notification.
        if worker.group == "report" and worker.error is not None:
            self.query_one("#report-status", Static).update(str(worker.error))

    @on(Input.Submitted, "#report-request")
    def request_typed(self, event: Input.Submitted) -> None:
        self.build(parse_request(event.value))
        self.query_one("#report-scroll", VerticalScroll).focus()

    def action_focus_request(self) -> None:
        self.query_one("#report-request", Input).focus()

    def action_rebuild(self) -> None:
        self.build(self.request)
