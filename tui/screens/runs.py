"""Runs: a sortable, filterable table; per-example outputs with ratings; new evaluations."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on, work
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Input, ProgressBar, Static
from textual.worker import Worker

from tunelab.tui.data import format_metric, main_metric
from tunelab.tui.messages import (
    CorrectionsLoaded,
    EvalChoicesLoaded,
    EvaluationStarted,
    OutputCorrected,
    OutputRated,
    RunDetailLoaded,
    RunOutputsLoaded,
    RunsChosenForCompare,
    RunsLoaded,
    RunStabilityLoaded,
    SettingsChanged,
)
from tunelab.tui.screens.base import TunelabScreen
from tunelab.tui.screens.correction import CorrectionModal
from tunelab.tui.screens.eval_modal import EvalModal
from tunelab.tui.screens.stability import StabilityModal
from tunelab.tui.widgets.columns import Column, PriorityTable
from tunelab.tui.widgets.nav_table import NavTable
from tunelab.tui.widgets.outputs_table import OutputsTable, judge_cell

if TYPE_CHECKING:
    from textual.app import ComposeResult

    from tunelab.engine.api.facade import EvalSpec
    from tunelab.store import Judgement, Run
    from tunelab.store.records import RunOutput

SORT_KEYS = ("newest", "metric", "prompt", "model", "dataset")
REMOTE_POLL_SECONDS = 2.0
"""How often the Runs screen ingests remote events while a remote run or a search goes on."""
RUN_COLUMNS = [
    Column(" ", 0, 1, min_width=1), Column("Run", 0, 6), Column("Prompt", 2, 30, "middle", 12),
    Column("Model", 3, 30, "middle"), Column("Dataset", 4, 20, "middle"), Column("Status", 0, 12),
    Column("Rows", 5, 11), Column("Main metric", 0, 20),
]  # fmt: skip
"""At 80 columns the main metric and status stay; rows, the dataset, then the model drop."""


class RunsScreen(TunelabScreen):
    """Every evaluation run; open one to read and rate its outputs."""

    CSS_PATH = "runs.tcss"

    SCREEN_TITLE = "Runs"
    AUTO_FOCUS = "#runs-table"
    BINDINGS = [
        Binding("enter", "open_selected", "Open", id="runs-open", tooltip="Open the selected run"),
        Binding("i", "show_detail", "Details", id="runs-detail",
                tooltip="The run in full: metrics, latency probe, each row's input and output "
                "(Enter on an output opens it at that row)"),
        Binding("slash", "focus_filter", "Filter", id="runs-filter",
                tooltip="Filter runs by prompt, model, dataset or status"),
        Binding("s", "cycle_sort", "Sort", id="runs-sort",
                tooltip="Sort by newest, main metric, prompt, model or dataset"),
        Binding("space", "mark_run", "Mark", id="runs-mark", key_display="␣",
                tooltip="Mark a run for comparison"),
        Binding("c", "compare_marked", "Compare", id="runs-compare",
                tooltip="Compare the marked runs (or the two newest)"),
        Binding("r", "refresh", "Refresh", id="runs-refresh",
                tooltip="Reload the runs (they also follow the database on their own)"),
        Binding("e", "new_evaluation", "Eval", id="runs-evaluate",
                tooltip="Start a new evaluation"),
        Binding("x", "cancel_evaluation", "Stop eval", id="runs-cancel-eval",
                tooltip="Cancel the running evaluation"),
        Binding("ctrl+y", "copy_output", "Copy", id="runs-copy",
                tooltip="Copy the selected output (OSC 52)"),
        Binding("v", "show_stability", "Stability", id="runs-stability",
                tooltip="A vote run's rows ranked by how much their samples disagree"),
        Binding("w", "correct_output", "Correct", id="runs-correct",
                tooltip="Write the output the selected row should have produced (kept beside "
                "the original; each save is a new version)"),
        Binding("escape", "close_run", "Back", id="runs-back",
                tooltip="Leave the filter (back to the table), or back to the run list"),
    ]  # fmt: skip

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.all_runs: list[Run] = []
        self.marked: list[int] = []
        self.sort_key = SORT_KEYS[0]
        self.open_run_id: int | None = None
        self.outputs: list[RunOutput] = []
        self.judgements: dict[int, Judgement] = {}
        self.followed_run_id: int | None = None
        """The run this screen started last: its progress shows above the table."""

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        with Vertical(id="runs"):
            with Horizontal(id="runs-top"):
                yield Input(placeholder="/ filter", id="runs-filter-input")
                yield Static("", id="runs-filter-count", classes="hint")
                yield Static("", id="runs-sort-label", classes="hint")
            with Horizontal(id="eval-status"):
                yield Static("", id="eval-label", classes="hint")
                yield ProgressBar(show_eta=False, id="eval-progress")
            yield PriorityTable(id="runs-table")
            with Vertical(id="run-detail"):
                yield Static("", id="run-title", classes="section-title", markup=False)
                yield OutputsTable(id="outputs-table")
                with VerticalScroll(id="output-scroll", classes="pane"):
                    yield Static("", id="output-text", markup=False)
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.query_one("#runs-table", PriorityTable).set_columns(RUN_COLUMNS)
        self.query_one("#run-detail").display = False
        self.query_one("#eval-status").display = False
        self.query_one("#runs-filter-count").display = False
        self._show_sort()
        self.load_runs()
        self.set_interval(REMOTE_POLL_SECONDS, self.poll_remote)

    def poll_remote(self) -> None:
        """A Slurm evaluation's rows and a search's candidates arrive as event files, which
        change nothing here until ingested: while one may come, ingest (the commit reloads)."""
        activity = getattr(self.app, "activity", None)
        remote = any(run.status == "running" and run.pid is None for run in self.all_runs)
        if remote or (activity is not None and activity.searches):
            self.ingest_remote()

    @work(thread=True, exclusive=True, exit_on_error=False, group="remote", description="Ingest")
    def ingest_remote(self) -> None:
        self.engine.refresh_jobs()

    # Run list ----------------------------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="store", description="Runs")
    def load_runs(self) -> None:
        self.engine.refresh_jobs()  # a run whose process vanished shows as interrupted
        self.post_message(RunsLoaded(self.store.list_runs()))

    def action_refresh(self) -> None:
        self.reload_data()

    def reload_data(self) -> None:
        """Read the runs again (and the open run's outputs); cursor, marks and filter stay."""
        self.load_runs()
        if self.open_run_id is not None:
            self.load_outputs(self.open_run_id)

    @on(RunsLoaded)
    def runs_loaded(self, event: RunsLoaded) -> None:
        if event.runs == self.all_runs and self.query_one("#runs-table", NavTable).row_count:
            return  # unchanged: leave the table (and its scroll) alone
        self.all_runs = event.runs
        self.show_runs()
        self.show_followed_run()

    def visible_runs(self) -> list[Run]:
        needle = self.query_one("#runs-filter-input", Input).value.strip().lower()
        runs = [
            r for r in self.all_runs
            if not needle or needle in " ".join(
                (str(r.id), r.prompt_ref, r.model_name, r.dataset_name, r.status)).lower()
        ]  # fmt: skip
        if self.sort_key == "metric":
            runs.sort(key=lambda r: -(main_metric(r) or ("", float("-inf")))[1])
        elif self.sort_key == "prompt":
            runs.sort(key=lambda r: r.prompt_ref)
        elif self.sort_key == "model":
            runs.sort(key=lambda r: r.model_name)
        elif self.sort_key == "dataset":
            runs.sort(key=lambda r: r.dataset_name)
        return runs

    def show_runs(self) -> None:
        visible = self.visible_runs()
        self.query_one("#runs-table", PriorityTable).set_rows(
            [
                (str(run.id), [
                    "●" if run.id in self.marked else " ", str(run.id), run.prompt_ref,
                    run.model_name, run.dataset_name, run.status,
                    f"{run.rows_done}/{run.rows_total}", format_metric(main_metric(run)),
                ])
                for run in visible
            ]
        )  # fmt: skip
        filtering = bool(self.query_one("#runs-filter-input", Input).value.strip())
        count = self.query_one("#runs-filter-count", Static)
        count.display = filtering  # no filter: the input keeps its full width
        count.update(match_count(len(visible), len(self.all_runs)) if filtering else "")

    @on(Input.Changed, "#runs-filter-input")
    def filter_changed(self) -> None:
        self.show_runs()

    @on(Input.Submitted, "#runs-filter-input")
    def filter_submitted(self) -> None:
        self.query_one("#runs-table", NavTable).focus()

    def action_focus_filter(self) -> None:
        self.query_one("#runs-filter-input", Input).focus()

    def action_cycle_sort(self) -> None:
        self.sort_key = SORT_KEYS[(SORT_KEYS.index(self.sort_key) + 1) % len(SORT_KEYS)]
        self._show_sort()
        self.show_runs()

    def _show_sort(self) -> None:
        self.query_one("#runs-sort-label", Static).update(f"sorted by {self.sort_key}")

    def action_mark_run(self) -> None:
        key = self.query_one("#runs-table", NavTable).selected_key()
        if key is None:
            return
        run_id = int(key)
        if run_id in self.marked:
            self.marked.remove(run_id)
        else:
            self.marked.append(run_id)
        self.show_runs()

    def action_compare_marked(self) -> None:
        run_ids = self.marked or [r.id for r in self.all_runs[:2]][::-1]
        if len(run_ids) < 2:
            self.notify("Mark two or more runs with space", severity="warning")
            return
        self.post_message(RunsChosenForCompare(list(run_ids)))

    # One run -----------------------------------------------------------------------------
    @on(DataTable.RowSelected, "#runs-table")
    def action_open_selected(self) -> None:
        key = self.query_one("#runs-table", NavTable).selected_key()
        if key is not None:
            self.open_run(int(key))

    def open_run(self, run_id: int) -> None:
        """Show one run's outputs (also called by the app when Home opens a run)."""
        self.open_run_id = run_id
        self.query_one("#runs-table").display = False
        self.query_one("#run-detail").display = True
        self.query_one("#outputs-table", OutputsTable).focus()
        self.load_outputs(run_id)

    @work(thread=True, exclusive=True, exit_on_error=False, group="outputs", description="Outputs")
    def load_outputs(self, run_id: int) -> None:
        self.post_message(
            RunOutputsLoaded(
                self.store.get_run(run_id),
                self.store.run_outputs(run_id),
                self.engine.output_judgements(run_id),
            )
        )

    @on(RunOutputsLoaded)
    def outputs_loaded(self, event: RunOutputsLoaded) -> None:
        if event.run.id != self.open_run_id:
            return
        self.outputs = event.outputs
        run = event.run
        self.query_one("#run-title", Static).update(
            f"Run {run.id} · {run.prompt_ref} · {run.model_name} · {run.dataset_name}/{run.split}"
            f" · {run.status} · {format_metric(main_metric(run))}"
        )
        self.judgements = event.judgements
        self.query_one("#outputs-table", OutputsTable).show_outputs(event.outputs, event.judgements)

    @on(DataTable.RowSelected, "#outputs-table")
    def output_selected(self) -> None:
        output = self.selected_output()
        if output is not None:
            self.load_run_detail(output.run_id, output.id)

    def action_show_detail(self) -> None:
        key = self.query_one("#runs-table", NavTable).selected_key()
        run_id = self.open_run_id if self.open_run_id is not None else key
        if run_id is None:
            self.notify("No run selected", severity="warning")
            return
        output = self.selected_output() if self.open_run_id is not None else None
        self.load_run_detail(int(run_id), output.id if output is not None else None)

    @work(thread=True, exclusive=True, exit_on_error=False, group="detail", description="Run")
    def load_run_detail(self, run_id: int, output_id: int | None) -> None:
        self.post_message(RunDetailLoaded(self.engine.run_detail(run_id), output_id))

    @on(RunDetailLoaded)
    def run_detail_loaded(self, event: RunDetailLoaded) -> None:
        from tunelab.tui.screens.run_detail import RunDetailModal

        self.app.push_screen(RunDetailModal(event.detail, event.output_id))

    @on(DataTable.RowHighlighted, "#outputs-table")
    def output_highlighted(self) -> None:
        output = self.selected_output()
        text = ""
        if output is not None:
            text = (
                f"row {output.row_idx} · reference: {output.reference or '—'} · "
                f"scores: {output.scores} · {output.latency_ms:.0f} ms\n\n{output.output}"
            )
            judged = self.judgements.get(output.id)
            if judged is not None:
                text += f"\n\njudge: {judge_cell(judged)} · {judged.rationale or '—'}"
        self.query_one("#output-text", Static).update(text)

    def selected_output(self) -> RunOutput | None:
        key = self.query_one("#outputs-table", OutputsTable).selected_key()
        return next((o for o in self.outputs if str(o.id) == key), None)

    @on(OutputsTable.RatingChosen)
    def rating_chosen(self, event: OutputsTable.RatingChosen) -> None:
        self.rate(event.output_id, event.rating)

    @work(thread=True, exclusive=False, exit_on_error=False, group="rating", description="Rate")
    def rate(self, output_id: int, rating: int) -> None:
        self.store.rate_output(output_id, rating)
        self.post_message(OutputRated(output_id, rating))

    @on(OutputRated)
    def output_rated(self, event: OutputRated) -> None:
        self.outputs = [
            o if o.id != event.output_id else _with_rating(o, event.rating) for o in self.outputs
        ]
        self.query_one("#outputs-table", OutputsTable).set_rating(event.output_id, event.rating)
        self.notify(f"Rated {event.rating}/5", timeout=1)

    def go_back(self) -> bool:
        """`q` in a run's outputs goes back to the run list."""
        if self.open_run_id is None:
            return False
        self.action_close_run()
        return True

    def action_close_run(self) -> None:
        if self.focused is self.query_one("#runs-filter-input", Input):
            self.query_one("#runs-table", NavTable).focus()  # the filter text stays applied
            return
        if self.open_run_id is None:
            return
        self.open_run_id = None
        self.query_one("#run-detail").display = False
        table = self.query_one("#runs-table", NavTable)
        table.display = True
        table.focus()
        self.load_runs()

    def action_show_stability(self) -> None:
        key = self.query_one("#runs-table", NavTable).selected_key()
        run_id = self.open_run_id if self.open_run_id is not None else key
        if run_id is None:
            self.notify("Select a run made with --samples N", severity="warning")
            return
        self.load_stability(int(run_id))

    @work(
        thread=True, exclusive=True, exit_on_error=False, group="stability", description="Stability"
    )
    def load_stability(self, run_id: int) -> None:
        self.post_message(RunStabilityLoaded(self.engine.run_stability(run_id)))

    @on(RunStabilityLoaded)
    def stability_loaded(self, event: RunStabilityLoaded) -> None:
        self.app.push_screen(StabilityModal(event.stability))

    def action_copy_output(self) -> None:
        output = self.selected_output()
        if output is not None:
            self.app.copy_to_clipboard(output.output)
            self.notify("Output copied (OSC 52)", timeout=2)

    def action_correct_output(self) -> None:
        output = self.selected_output() if self.open_run_id is not None else None
        if output is None:
            self.notify("Open a run and pick the output to correct", severity="warning")
            return
        self.load_corrections(output)

    @work(thread=True, exclusive=True, exit_on_error=False, group="feedback",
          description="Corrections")  # fmt: skip
    def load_corrections(self, output: RunOutput) -> None:
        self.post_message(CorrectionsLoaded(output, self.engine.corrections(output.id)))

    @on(CorrectionsLoaded)
    def ask_correction(self, event: CorrectionsLoaded) -> None:
        output_id = event.output.id

        def save(text: str | None) -> None:
            if text is not None:
                self.save_correction(output_id, text)

        self.app.push_screen(CorrectionModal(event.output, event.history), save)

    @work(thread=True, exclusive=False, exit_on_error=False, group="feedback",
          description="Correct")  # fmt: skip
    def save_correction(self, output_id: int, text: str) -> None:
        self.post_message(OutputCorrected(self.engine.correct_output(output_id, text)))

    @on(OutputCorrected)
    def output_corrected(self, event: OutputCorrected) -> None:
        saved = event.correction
        self.notify(f"Saved correction v{saved.version} of output {saved.run_output_id} "
                    f"(by {saved.author})", timeout=3)  # fmt: skip

    # Evaluation --------------------------------------------------------------------------
    def action_new_evaluation(self) -> None:
        viewed: str | None = getattr(self.app, "viewed_prompt_ref", None)
        self.load_eval_choices(viewed, dict(self.settings.last_evaluation))

    @work(thread=True, exclusive=True, exit_on_error=False, group="store", description="Evaluate")
    def load_eval_choices(self, viewed_ref: str | None, last: dict[str, str]) -> None:
        """The form's choices, preselecting the viewed version (else the last evaluated one),
        the last model and a dataset split whose rows have every variable of that version."""
        refs = [
            v.ref
            for p in self.store.list_prompts()
            for v in self.store.list_prompt_versions(p.name)
        ][::-1]
        models = [m.name for m in self.store.list_models()]
        datasets = {d.name: d.split_names for d in self.store.list_datasets()}
        ref = next((r for r in (viewed_ref, last.get("prompt")) if r in refs), None)
        ref = ref or (refs[0] if refs else None)
        fitting = [
            name for name in datasets
            if ref is not None and not self.engine.missing_variables(ref, name)
        ]  # fmt: skip
        self.post_message(
            EvalChoicesLoaded(
                refs, models, datasets, default_ref=ref,
                default_model=last.get("model") if last.get("model") in models else None,
                default_split=default_split(datasets, fitting, last.get("split")),
                default_limit=last.get("limit", ""),
            )
        )  # fmt: skip

    @on(EvalChoicesLoaded)
    def ask_eval(self, event: EvalChoicesLoaded) -> None:
        if not (event.prompt_refs and event.models and any(event.datasets.values())):
            self.notify("An evaluation needs a prompt, a model and a dataset", severity="warning")
            return
        self.app.push_screen(
            EvalModal(
                event.prompt_refs, event.models, event.datasets, default_ref=event.default_ref,
                default_model=event.default_model, default_split=event.default_split,
                default_limit=event.default_limit,
            ),
            self.start_evaluation,
        )  # fmt: skip

    def start_evaluation(self, spec: EvalSpec | None) -> None:
        if spec is None:
            return
        self.settings.last_evaluation = {
            "prompt": spec.prompt_ref, "model": spec.model, "split": f"{spec.dataset}/{spec.split}",
            "limit": "" if spec.limit is None else str(spec.limit),
        }  # fmt: skip
        self.post_message(SettingsChanged())
        self.show_eval_line(f"Starting an evaluation of {spec.prompt_ref} on {spec.model}…", 0)
        self.launch_evaluation(spec)

    @work(thread=True, exit_on_error=False, group="evaluation", description="Evaluation")
    def launch_evaluation(self, spec: EvalSpec) -> None:
        """Off the UI thread: create the run and start its detached worker process."""
        self.post_message(EvaluationStarted(self.engine.start_evaluation(spec)))

    @on(EvaluationStarted)
    def evaluation_started(self, event: EvaluationStarted) -> None:
        self.followed_run_id = event.run_id
        self.notify(
            f"Run {event.run_id} started in its own process: it keeps running if you quit",
            timeout=4,
        )
        self.load_runs()

    def show_eval_line(self, text: str, progress: int | None, total: int | None = None) -> None:
        """The evaluation status line: a progress bar while it runs (`progress` not None),
        and once it ends just the outcome or its reason, so nothing keeps animating."""
        self.query_one("#eval-status").display = True
        self.query_one("#eval-label", Static).update(text)
        bar = self.query_one("#eval-progress", ProgressBar)
        bar.display = progress is not None
        if progress is not None:
            bar.update(total=total or None, progress=progress)

    def show_followed_run(self) -> None:
        """What the followed run (or the newest running one) is doing, read from the store
        by the live refresh: its process writes rows, this screen only reads them."""
        running = [run for run in self.all_runs if run.status == "running"]
        followed = next((r for r in self.all_runs if r.id == self.followed_run_id), None)
        run = followed if followed is not None else (running[0] if running else None)
        if run is None:
            return
        if run.status == "running":
            metric = main_metric(run)
            self.show_eval_line(
                f"Evaluating run {run.id} · {run.rows_done}/{run.rows_total}"
                + (f" · {format_metric(metric)}" if run.rows_done and metric else "")
                + (f" · {len(running) - 1} more running" if len(running) > 1 else ""),
                run.rows_done,
                run.rows_total,
            )
            return
        reason = f": {run.error}" if run.error and run.status != "succeeded" else ""
        outcome = format_metric(main_metric(run)) if run.status == "succeeded" else ""
        self.show_eval_line(f"Run {run.id} {run.status}{reason} {outcome}".rstrip(), None)

    def worker_failed(self, worker: Worker[object]) -> None:
        if worker.group == "evaluation":
            error = worker.error
            reason = (str(error) or type(error).__name__) if error is not None else "unknown"
            self.show_eval_line(f"Evaluation did not start: {reason.splitlines()[0]}", None)
            self.load_runs()
        elif worker.group == "cancel-eval":
            self.show_followed_run()

    def running_run_to_cancel(self) -> Run | None:
        """The selected run if it is running, else the one this screen follows."""
        key = self.query_one("#runs-table", NavTable).selected_key()
        by_id = {str(run.id): run for run in self.all_runs}
        for candidate in (key, str(self.followed_run_id)):
            run = by_id.get(str(candidate))
            if run is not None and run.status == "running":
                return run
        return None

    def action_cancel_evaluation(self) -> None:
        run = self.running_run_to_cancel()
        if run is None:
            self.notify("No evaluation is running here", timeout=2)
            return
        from tunelab.tui.screens.confirm import ConfirmModal

        def answered(stop: bool | None) -> None:
            if stop:
                self.show_eval_line(f"Stopping run {run.id} after its current chunk…", None)
                self.stop_evaluation(run.id)

        self.app.push_screen(
            ConfirmModal(
                f"Stop run {run.id}?",
                f"{run.rows_done} of {run.rows_total} rows are scored and kept; "
                f"`tunelab eval --resume {run.id}` finishes it later.",
                "Stop it",
                "Keep running",
            ),
            answered,
        )

    @work(thread=True, exit_on_error=False, group="cancel-eval", description="Stop evaluation")
    def stop_evaluation(self, run_id: int) -> None:
        self.engine.cancel_evaluation(run_id)


def default_split(
    datasets: dict[str, list[str]], fitting: list[str], last: str | None
) -> str | None:
    """The last `dataset/split` if its dataset fits the prompt, else a fitting dataset's test
    split (else its first); None when no dataset fits (the form then picks its own)."""
    if last is not None and "/" in last:
        name, split = last.rsplit("/", 1)
        if name in fitting and split in datasets.get(name, []):
            return last
    for name in fitting:
        splits = datasets[name]
        if splits:
            return f"{name}/{'test' if 'test' in splits else splits[0]}"
    return None


def match_count(shown: int, total: int) -> str:
    """What a filter keeps: "12 of 80", or "no matches"."""
    return f"{shown} of {total}" if shown else "no matches"


def _with_rating(output: RunOutput, rating: int) -> RunOutput:
    from dataclasses import replace

    return replace(output, rating=rating)
