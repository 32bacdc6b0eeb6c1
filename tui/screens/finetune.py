"""Fine-tune: a form with every training setting and its CLI command; jobs with live curves.

Jobs are detached processes that write progress to the store; this screen only polls the
store, so it can close and reopen and still shows jobs the CLI started.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual import events, on, work
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Input, Label, Log, Select, Static, TabbedContent, TabPane

from tunelab.engine.training.jobs import job_placement
from tunelab.tui.data import job_fraction
from tunelab.tui.job_errors import one_line_error, without_tracebacks
from tunelab.tui.messages import (
    JobCancelled,
    JobDetailLoaded,
    JobLaunched,
    JobLogRead,
    JobsPolled,
    SweepsLoaded,
    TrainingFieldsLoaded,
)
from tunelab.tui.screens.base import TunelabScreen
from tunelab.tui.widgets.columns import Column, PriorityTable
from tunelab.tui.widgets.curves import TrainingCurves
from tunelab.tui.widgets.nav_table import NavTable

if TYPE_CHECKING:
    from textual.app import ComposeResult
    from textual.worker import Worker

    from tunelab.engine.api.facade import TrainingField

POLL_SECONDS = 2.0
JOB_COLUMNS = [
    Column("Job", 0, 5), Column("Method", 3, 10), Column("Status", 0, 10),
    Column("Progress", 2, 11), Column("Where", 5, 16), Column("Base", 4, 24, "middle"),
    Column("Dataset", 6, 20, "middle"), Column("Error", 1, 60, min_width=16),
]  # fmt: skip
"""The error is one line, cut to fit; Enter opens the job's detail with the whole error."""
FULL_LOG_LINES = 5000
"""The most lines `l` shows (the engine reads at most the log's last 64 KiB)."""


def parse_field(field: TrainingField, text: str) -> Any:
    """Turn the form's text into the field's kind; empty means its default. ValueError if bad."""
    text = text.strip()
    if text == "":
        return field.default
    try:
        if field.kind == "bool":
            if text.lower() not in ("true", "false", "yes", "no", "1", "0"):
                raise ValueError("write true or false")
            return text.lower() in ("true", "yes", "1")
        if field.kind == "int":
            return int(text)
        if field.kind == "float":
            return float(text)
    except ValueError as exc:
        raise ValueError(f"{field.name}: {exc}") from None
    if field.kind == "list":
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


def format_field(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


class FinetuneScreen(TunelabScreen):
    """Launch, watch, cancel and resume fine-tuning jobs."""

    CSS_PATH = "finetune.tcss"

    SCREEN_TITLE = "Fine-tune"
    AUTO_FOCUS = "#job-list"
    BINDINGS = [
        Binding("n", "new_job", "New", id="finetune-new", tooltip="Open the training form"),
        Binding("ctrl+s", "launch", "Launch", id="finetune-launch",
                tooltip="Launch a job with the form's settings"),
        Binding("x", "cancel_job", "Cancel", id="finetune-cancel",
                tooltip="Cancel the selected job"),
        Binding("R", "resume_job", "Resume", id="finetune-resume",
                tooltip="Resume the selected failed or cancelled job"),
        Binding("enter", "open_job", "Details", id="finetune-detail",
                tooltip="The selected job in full: settings, validation, checkpoints, error, log"),
        Binding("l", "show_log", "Log", id="finetune-log",
                tooltip="Read the selected job's whole log, traceback included"),
        Binding("escape", "show_jobs", "Jobs", id="finetune-back", tooltip="Back to the job list"),
        Binding("T", "show_trend", "Trend", id="finetune-trend",
                tooltip="Chart a metric across the selected job's checkpoints"),
        Binding("w", "show_sweeps", "Sweeps", id="finetune-sweeps",
                tooltip="Hyperparameter sweeps: trials, states, the metric per trial"),
    ]  # fmt: skip

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields: list[TrainingField] = []
        self.selected_job_id: int | None = None
        self._reads_started = 0
        self._reads_answered = 0
        self._ticks_waited = 0
        self._launched_job_id: int | None = None

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        with TabbedContent(id="finetune-tabs"):
            with TabPane("Jobs", id="tab-jobs"):
                yield PriorityTable(id="job-list")
                with Horizontal(id="job-detail"):
                    yield TrainingCurves(id="job-curves")
                    yield Log(id="job-log", max_lines=500)
            with TabPane("New job", id="tab-new"):
                with VerticalScroll(id="job-form"):
                    yield Static("Loading training settings…", id="form-loading", classes="hint")
                yield Static("", id="field-help", markup=False)
                yield Static("", id="job-command", markup=False)
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.query_one("#job-list", PriorityTable).set_columns(JOB_COLUMNS)
        self.load_fields()
        self.poll_jobs()
        self.set_interval(POLL_SECONDS, self.poll_when_idle)

    # Polling -----------------------------------------------------------------------------
    def poll_when_idle(self) -> None:
        """The timer's read: skipped while one is under way, so a slow machine still shows
        each answer instead of superseding every read before it returns (a read that failed
        never answers, so after a few ticks the timer reads again anyway)."""
        pending = self._reads_answered < self._reads_started
        if pending and self._ticks_waited < 5:
            self._ticks_waited += 1
            return
        self._ticks_waited = 0
        self.poll_jobs()

    def poll_jobs(self) -> None:
        self._reads_started += 1
        self.read_jobs(self.selected_job_id, self._reads_started)

    def reload_data(self) -> None:
        self.poll_jobs()

    @work(thread=True, exclusive=True, exit_on_error=False, group="store", description="Jobs")
    def read_jobs(self, selected_job_id: int | None, read_number: int) -> None:
        self.engine.refresh_jobs()
        jobs = self.store.list_jobs()
        if selected_job_id is None and jobs:
            selected_job_id = jobs[0].id
        metrics, log_lines = [], []
        if selected_job_id is not None:
            metrics = self.store.job_metrics(selected_job_id)
            log_lines = self.engine.log_tail(selected_job_id)
        names = {f"model:{m.id}": m.name for m in self.store.list_models()}
        names.update({f"dataset:{d.id}": d.name for d in self.store.list_datasets()})
        self.post_message(JobsPolled(jobs, selected_job_id, metrics, log_lines, names, read_number))

    @on(JobsPolled)
    def jobs_polled(self, event: JobsPolled) -> None:
        if event.read_number < self._reads_started:
            # A thread worker cannot be stopped, so a superseded read still answers; its
            # table may lack a just-launched job, and rebuilding from it would move the
            # cursor (and the selection) off that job.
            return
        self._reads_answered = event.read_number
        table = self.query_one("#job-list", PriorityTable)
        selected = self.selected_job_id or event.selected_job_id
        arrived = False
        if self._launched_job_id is not None and any(
            job.id == self._launched_job_id for job in event.jobs
        ):
            # A just-launched job takes the cursor once its row arrives, whatever a relayout
            # of the table highlighted meanwhile (showing the Jobs tab resizes the table,
            # and its highlight of the old row counts as a pick).
            selected, self._launched_job_id = self._launched_job_id, None
            self.selected_job_id = selected
            arrived = True
        keep = str(selected) if selected is not None else table.selected_key()
        rows = []
        for job in event.jobs:
            done, total = job_fraction(job)
            progress = f"{int(done)}/{int(total)}" if total else "—"
            base = event.names.get(f"model:{job.base_model_id}", "—")
            dataset = event.names.get(f"dataset:{job.dataset_id}", "—")
            rows.append((str(job.id), [
                str(job.id), job.method, job.status, progress, job_placement(job), base,
                dataset, one_line_error(job.error, 200),
            ]))  # fmt: skip
        table.set_rows(rows, cursor_key=keep)
        if event.selected_job_id != self.selected_job_id and self.selected_job_id is not None:
            if arrived:  # this read carried another job's curves and log
                self.poll_jobs()
            return
        self.selected_job_id = event.selected_job_id
        self.query_one(TrainingCurves).show_points(event.metrics)
        log = self.query_one("#job-log", Log)
        log.clear()
        # A traceback is folded to its last line here; `l` shows the whole log.
        log.write_lines(without_tracebacks(event.log_lines))

    def action_show_log(self) -> None:
        job_id = self._selected()
        if job_id is not None:
            self.read_full_log(job_id)

    @work(thread=True, exclusive=True, exit_on_error=False, group="log", description="Log")
    def read_full_log(self, job_id: int) -> None:
        text = "\n".join(self.engine.log_tail(job_id, lines=FULL_LOG_LINES))
        self.post_message(JobLogRead(job_id, text))

    @on(JobLogRead)
    def show_full_log(self, event: JobLogRead) -> None:
        from tunelab.tui.screens.modals import TextViewModal

        self.app.push_screen(
            TextViewModal(f"Job {event.job_id} log", event.text or "(the log is empty)")
        )

    @on(DataTable.RowSelected, "#job-list")
    def action_open_job(self) -> None:
        job_id = self._selected()
        if job_id is not None:
            self.read_job_detail(job_id)

    @work(thread=True, exclusive=True, exit_on_error=False, group="detail", description="Job")
    def read_job_detail(self, job_id: int) -> None:
        self.post_message(JobDetailLoaded(self.engine.job_detail(job_id)))

    @on(JobDetailLoaded)
    def show_job_detail(self, event: JobDetailLoaded) -> None:
        from tunelab.tui.screens.job_detail import JobDetailModal

        self.app.push_screen(JobDetailModal(event.detail))

    @on(DataTable.RowHighlighted, "#job-list")
    def job_highlighted(self, event: DataTable.RowHighlighted) -> None:
        key = event.row_key.value
        if key is not None and int(key) != self.selected_job_id:
            self.selected_job_id = int(key)
            self.poll_jobs()

    def action_show_trend(self) -> None:
        from tunelab.engine.api.types import TrendRequest
        from tunelab.tui.screens.trend import TrendModal

        job_id = self._selected()
        if job_id is None:
            self.notify("Pick a job first", severity="warning")
            return
        self.app.push_screen(TrendModal(self.engine, TrendRequest(job_id=job_id)))

    def _selected(self) -> int | None:
        key = self.query_one("#job-list", NavTable).selected_key()
        return int(key) if key is not None else None

    # Sweeps ------------------------------------------------------------------------------
    def action_show_sweeps(self) -> None:
        self.load_sweeps()

    @work(thread=True, exclusive=True, exit_on_error=False, group="sweeps", description="Sweeps")
    def load_sweeps(self) -> None:
        self.post_message(SweepsLoaded(self.engine.sweeps()))

    @on(SweepsLoaded)
    def sweeps_loaded(self, event: SweepsLoaded) -> None:
        from tunelab.tui.screens.sweeps import SweepsModal

        self.app.push_screen(SweepsModal(event.sweeps))

    # Cancel and resume -------------------------------------------------------------------
    def action_cancel_job(self) -> None:
        """Asks first: a cancelled job stops training (R resumes from its last checkpoint)."""
        from tunelab.tui.screens.confirm import ConfirmModal

        job_id = self._selected()
        if job_id is None:
            return

        def answered(cancel: bool | None) -> None:
            if cancel:
                self.cancel_job(job_id)

        self.app.push_screen(
            ConfirmModal(f"Cancel job {job_id}?",
                         "Training stops; R resumes it later from its last checkpoint.",
                         "Cancel the job", "Keep it running"),
            answered,
        )  # fmt: skip

    @work(thread=True, exclusive=False, exit_on_error=False, group="finetune", description="Cancel")
    def cancel_job(self, job_id: int) -> None:
        self.engine.cancel_job(job_id)
        self.post_message(JobCancelled(job_id))

    @on(JobCancelled)
    def job_cancelled(self, event: JobCancelled) -> None:
        self.notify(f"Cancelled job {event.job_id}", timeout=3)
        self.poll_jobs()

    def action_resume_job(self) -> None:
        job_id = self._selected()
        if job_id is not None:
            self.resume_job(job_id)

    @work(thread=True, exclusive=False, exit_on_error=False, group="finetune", description="Resume")
    def resume_job(self, job_id: int) -> None:
        self.post_message(JobLaunched(self.engine.resume_job(job_id)))

    # The form ----------------------------------------------------------------------------
    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="fields",
        description="Training form",
    )
    def load_fields(self) -> None:
        self.post_message(TrainingFieldsLoaded(self.engine.training_fields()))

    def worker_failed(self, worker: Worker[object]) -> None:
        # The form's "Loading training settings…" ends in the reason, never stays.
        if worker.group == "fields":
            for loading in self.query("#form-loading").results(Static):
                loading.update(f"Could not load the training settings: {worker.error}")

    @on(TrainingFieldsLoaded)
    async def fields_loaded(self, event: TrainingFieldsLoaded) -> None:
        self.fields = event.fields
        form = self.query_one("#job-form", VerticalScroll)
        await form.remove_children()
        rows = []
        for field in event.fields:
            if field.choices:
                editor: Select[str] | Input = Select[str](
                    [(c, c) for c in field.choices], value=str(field.default),
                    allow_blank=False, id=f"field-{field.name}",
                )  # fmt: skip
            else:
                editor = Input(format_field(field.default), id=f"field-{field.name}")
            editor.tooltip = field.help
            rows.append(Horizontal(Label(field.name), editor, classes="form-row"))
        await form.mount_all(rows)
        self.update_command()

    def form_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for field in self.fields:
            widget = self.query_one(f"#field-{field.name}")
            if isinstance(widget, Select):
                values[field.name] = str(widget.value)
            elif isinstance(widget, Input):
                values[field.name] = parse_field(field, widget.value)
        return values

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        """The focused setting's help text, shown on screen (a tooltip needs a mouse)."""
        widget_id = event.widget.id or ""
        if not widget_id.startswith("field-"):
            return
        name = widget_id.removeprefix("field-")
        help_text = next((f.help for f in self.fields if f.name == name), "")
        self.query_one("#field-help", Static).update(f"{name}: {help_text}" if help_text else "")

    @on(Input.Changed, "#job-form Input")
    @on(Select.Changed, "#job-form Select")
    def update_command(self) -> None:
        command = self.query_one("#job-command", Static)
        try:
            command.update("$ " + self.engine.training_command(self.form_values()))
            command.remove_class("error-text")
        except ValueError as exc:
            command.update(str(exc))
            command.add_class("error-text")

    def action_new_job(self) -> None:
        self.query_one("#finetune-tabs", TabbedContent).active = "tab-new"
        inputs = self.query("#job-form Input, #job-form Select")
        if inputs:
            inputs.first().focus()

    def go_back(self) -> bool:
        """`q` on the training form goes back to the job list."""
        if self.query_one("#finetune-tabs", TabbedContent).active == "tab-jobs":
            return False
        self.action_show_jobs()
        return True

    def action_show_jobs(self) -> None:
        self.query_one("#finetune-tabs", TabbedContent).active = "tab-jobs"
        self.query_one("#job-list", NavTable).focus()

    def action_launch(self) -> None:
        if self.query_one("#finetune-tabs", TabbedContent).active != "tab-new":
            self.action_new_job()
            return
        try:
            values = self.form_values()
        except ValueError as exc:
            self.notify(str(exc), severity="error")
            return
        self.launch(values)

    @work(thread=True, exclusive=True, exit_on_error=False, group="finetune", description="Launch")
    def launch(self, values: dict[str, Any]) -> None:
        self.post_message(JobLaunched(self.engine.launch_job(values)))

    @on(JobLaunched)
    def job_launched(self, event: JobLaunched) -> None:
        self.notify(f"Job {event.job_id} queued", timeout=3)
        self.selected_job_id = self._launched_job_id = event.job_id
        self.action_show_jobs()
        self.poll_jobs()
