"""Home: recent runs with their main metric, live jobs, and the best prompt and checkpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on, work
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Label, ProgressBar, Static

from tunelab.tui.data import (
    best_checkpoint_per_dataset,
    best_prompt_per_dataset,
    format_metric,
    job_fraction,
    job_summary,
    main_metric,
)
from tunelab.tui.messages import HomeLoaded, RunChosen
from tunelab.tui.screens.base import TunelabScreen
from tunelab.tui.widgets.columns import Column, PriorityTable

if TYPE_CHECKING:
    from textual.app import ComposeResult

    from tunelab.store import Dataset, Job, Run


class JobRow(Vertical):
    """One running or queued job: a summary line and a progress bar."""

    def __init__(self, job: Job) -> None:
        super().__init__(id=f"job-{job.id}", classes="job-row")
        self.job = job

    def compose(self) -> ComposeResult:
        yield Label(job_summary(self.job), classes="job-summary")
        yield ProgressBar(show_eta=False, classes="job-progress")

    def on_mount(self) -> None:
        # `is_mounted` turns true only after this handler, so draw here without `show`'s check.
        self._draw(self.job)

    def show(self, job: Job) -> None:
        self.job = job
        if not self.is_mounted:
            # A poll can land while the row is still composing: `on_mount` shows the latest job.
            return
        self._draw(job)

    def _draw(self, job: Job) -> None:
        done, total = job_fraction(job)
        self.query_one(Label).update(job_summary(job))
        self.query_one(ProgressBar).update(total=total or None, progress=done)


RUN_COLUMNS = [
    Column("Run", 0, 6), Column("Prompt", 2, 30, "middle", 12), Column("Model", 3, 30, "middle"),
    Column("Dataset", 4, 20, "middle"), Column("Status", 0, 12), Column("Main metric", 0, 20),
]  # fmt: skip
"""At 80 columns the main metric and status stay; the dataset, then the model drop first."""
BEST_COLUMNS = [
    Column("Dataset", 0, 20, "middle"), Column("Best prompt version", 1, 60, "middle", 16),
    Column("Best checkpoint", 0, 60, "middle", 16),
]  # fmt: skip


class HomeScreen(TunelabScreen):
    """What is going on in this workspace, at a glance."""

    SCREEN_TITLE = "Home"
    AUTO_FOCUS = "#home-runs"
    BINDINGS = [
        Binding("r", "refresh", "Refresh", id="home-refresh", tooltip="Reload runs and jobs"),
        Binding(
            "enter", "open_run", "Open run", id="home-open-run",
            tooltip="Open the selected run in the Runs screen",
        ),
    ]  # fmt: skip

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        with Vertical(id="home"):
            yield Static("Recent runs", classes="section-title")
            yield PriorityTable(id="home-runs")
            yield Static("Jobs", classes="section-title")
            with VerticalScroll(id="home-jobs"):
                yield Static("No running or queued jobs.", id="home-no-jobs", classes="muted")
            yield Static("Best per dataset", classes="section-title")
            yield PriorityTable(id="home-best")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.query_one("#home-runs", PriorityTable).set_columns(RUN_COLUMNS)
        best = self.query_one("#home-best", PriorityTable)
        best.set_columns(BEST_COLUMNS)
        best.can_focus = False
        self.shown: HomeLoaded | None = None
        self.action_refresh()

    def action_refresh(self) -> None:
        self.load_home()

    def reload_data(self) -> None:
        """The app saw a commit (a job's progress, a run from the CLI): read everything again."""
        self.load_home()

    @work(thread=True, exclusive=True, exit_on_error=False, group="store", description="Home")
    def load_home(self) -> None:
        runs = self.store.list_runs(limit=200)
        jobs = self.store.list_jobs(statuses=["running", "queued"])
        datasets = self.store.list_datasets()
        models = self.store.list_models()
        self.post_message(
            HomeLoaded(
                runs=runs[:50],
                jobs=jobs,
                best_prompts=best_prompt_per_dataset(runs, datasets, models),
                best_checkpoints=best_checkpoint_per_dataset(runs, datasets, models),
                main_metrics={
                    r.id: format_metric(main_metric(r, _dataset(datasets, r))) for r in runs
                },
            )
        )

    @on(HomeLoaded)
    def show_home(self, event: HomeLoaded) -> None:
        if event == self.shown:
            return  # nothing new: leave the tables (and their scroll) alone
        self.shown = event
        rows = []
        for run in event.runs:
            status = run.status if run.status != "running" else f"{run.rows_done}/{run.rows_total}"
            rows.append((str(run.id), [
                str(run.id), run.prompt_ref, run.model_name, run.dataset_name, status,
                event.main_metrics.get(run.id, "—"),
            ]))  # fmt: skip
        self.query_one("#home-runs", PriorityTable).set_rows(rows)
        self._show_jobs(event.jobs)
        names = sorted(set(event.best_prompts) | set(event.best_checkpoints))
        self.query_one("#home-best", PriorityTable).set_rows(
            [
                (name, [name, event.best_prompts.get(name, "—"),
                        event.best_checkpoints.get(name, "—")])
                for name in names
            ]
        )  # fmt: skip

    def _show_jobs(self, jobs: list[Job]) -> None:
        box = self.query_one("#home-jobs", VerticalScroll)
        wanted = {f"job-{job.id}": job for job in jobs}
        for row in list(box.query(JobRow)):
            if row.id not in wanted:
                row.remove()
        for key, job in wanted.items():
            existing = box.query(f"#{key}")
            if existing:
                existing.first(JobRow).show(job)
            else:
                box.mount(JobRow(job))
        self.query_one("#home-no-jobs").display = not jobs

    @on(DataTable.RowSelected, "#home-runs")
    def action_open_run(self) -> None:
        key = self.query_one("#home-runs", PriorityTable).selected_key()
        if key is not None:
            self.post_message(RunChosen(int(key)))


def _dataset(datasets: list[Dataset], run: Run) -> Dataset | None:
    return next((d for d in datasets if d.id == run.dataset_id), None)
