"""Playground: render a prompt version for a row or free input, stream the model's output."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on, work
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Input, Label, Select, Static
from textual.worker import Worker, get_current_worker

from tunelab.engine.api.types import RowInput
from tunelab.engine.prompts.settings import (
    GenerationSettings,
    format_logit_bias,
    parse_logit_bias,
)
from tunelab.engine.prompts.text import version_to_content
from tunelab.tui.messages import (
    BiasTokenized,
    GenerationFinished,
    GenerationStarted,
    PlaygroundChoicesLoaded,
    PreviewRendered,
    PromptVersionViewed,
    RowsLoaded,
    TokensReceived,
)
from tunelab.tui.screens.base import TunelabScreen

if TYPE_CHECKING:
    from textual.app import ComposeResult

    from tunelab.store import Dataset, DatasetRow, PromptVersion

ROW_PREVIEW_LIMIT = 200
SETTING_INPUTS = (
    ("#pg-temperature", "temperature"),
    ("#pg-max-tokens", "max_new_tokens"),
    ("#pg-top-p", "top_p"),
)


class PlaygroundScreen(TunelabScreen):
    """Try one prompt version on one input and watch tokens arrive."""

    CSS_PATH = "playground.tcss"

    SCREEN_TITLE = "Playground"
    AUTO_FOCUS = "#pg-version"
    BINDINGS = [
        Binding("ctrl+r", "run_generation", "Run", id="playground-run",
                tooltip="Render and generate (re-runs with the same key)"),
        Binding("ctrl+g", "stop_generation", "Stop", id="playground-stop",
                tooltip="Stop the running generation"),
        Binding("ctrl+y", "copy_output", "Copy", id="playground-copy",
                tooltip="Copy the output to the clipboard (OSC 52)"),
        Binding("ctrl+l", "preview", "Preview", id="playground-preview",
                tooltip="Re-render the prompt and its token count"),
    ]  # fmt: skip

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.versions: dict[str, PromptVersion] = {}
        self.rows: list[DatasetRow] = []
        self.rows_source: tuple[str, str] | None = None
        """(dataset, split) the loaded rows come from: few-shot examples are drawn from it."""
        self.datasets: dict[str, Dataset] = {}
        """`name/split` → dataset, for the input columns free text goes into."""
        self.output_text = ""
        self.first_token_s: float | None = None
        self.pending_ref: str | None = None
        self.generating = False

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        with Vertical(id="playground"):
            with Horizontal(classes="pg-row"):
                yield Select[str]([], prompt="Prompt version", id="pg-version")
                yield Select[str]([], prompt="Model", id="pg-model")
                yield Select[str]([], prompt="Dataset split", id="pg-dataset")
                yield Input("0", placeholder="row", id="pg-row", type="integer")
            yield Input(placeholder="Free input (used instead of the dataset row)", id="pg-free")
            with Horizontal(classes="pg-row", id="pg-settings"):
                yield Label("temp")
                yield Input(placeholder="0", id="pg-temperature", type="number", compact=True)
                yield Label("max tokens")
                yield Input(placeholder="64", id="pg-max-tokens", type="integer", compact=True)
                yield Label("top_p")
                yield Input(placeholder="1", id="pg-top-p", type="number", compact=True)
                yield Label("bias")
                yield Input(placeholder="yes=2, no=-2", id="pg-bias", compact=True)
            yield Static("", id="pg-bias-preview", classes="hint", markup=False)
            with Horizontal(id="pg-panes"):
                with Vertical(classes="pane", id="pg-prompt-pane"):
                    yield Label("Rendered prompt", classes="section-title")
                    yield Static("", id="pg-token-count", classes="hint")
                    with VerticalScroll():
                        yield Static("", id="pg-prompt", markup=False)
                with Vertical(classes="pane", id="pg-output-pane"):
                    yield Label("Output", classes="section-title")
                    yield Static("", id="pg-timing", classes="hint")
                    with VerticalScroll(id="pg-output-scroll"):
                        yield Static("", id="pg-output", markup=False)
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.load_choices()

    def choose_version(self, ref: str) -> None:
        """Select a prompt version (from the Prompts screen); waits for the choices to load."""
        self.pending_ref = ref
        if ref in self.versions:
            self.query_one("#pg-version", Select).value = ref
        else:
            self.load_choices()

    @work(thread=True, exclusive=True, exit_on_error=False, group="store", description="Playground")
    def load_choices(self) -> None:
        versions = [
            v for p in self.store.list_prompts() for v in self.store.list_prompt_versions(p.name)
        ]
        self.post_message(
            PlaygroundChoicesLoaded(versions, self.store.list_models(), self.store.list_datasets())
        )

    @on(PlaygroundChoicesLoaded)
    def show_choices(self, event: PlaygroundChoicesLoaded) -> None:
        self.versions = {v.ref: v for v in event.versions}
        version_select = self.query_one("#pg-version", Select)
        refs = [(v.ref, v.ref) for v in reversed(event.versions)]
        version_select.set_options(refs)
        if self.pending_ref in self.versions:
            version_select.value = self.pending_ref
        elif refs:
            version_select.value = refs[0][1]
        model_select = self.query_one("#pg-model", Select)
        model_select.set_options([(f"{m.name} ({m.kind})", m.name) for m in event.models])
        if event.models:
            model_select.value = event.models[0].name
        self.datasets = {f"{d.name}/{s}": d for d in event.datasets for s in d.split_names}
        dataset_select = self.query_one("#pg-dataset", Select)
        dataset_select.set_options(
            [(f"{d.name}/{s}", f"{d.name}/{s}") for d in event.datasets for s in d.split_names]
        )
        if event.datasets and event.datasets[0].split_names:
            dataset_select.value = f"{event.datasets[0].name}/{event.datasets[0].split_names[0]}"

    @on(Select.Changed, "#pg-version")
    def version_changed(self, event: Select.Changed) -> None:
        version = self.versions.get(str(event.value))
        if version is None:
            return
        self.post_message(PromptVersionViewed(version.ref))
        settings = version.settings
        for input_id, key in SETTING_INPUTS:
            self.query_one(input_id, Input).value = str(settings.get(key, ""))
        bias = settings.get("logit_bias") or {}
        self.query_one("#pg-bias", Input).value = format_logit_bias(bias)
        self.action_preview()

    @on(Select.Changed, "#pg-dataset")
    def dataset_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str) and "/" in event.value:
            name, split = event.value.rsplit("/", 1)
            self.load_rows(name, split)

    @work(thread=True, exclusive=True, exit_on_error=False, group="rows", description="Rows")
    def load_rows(self, dataset: str, split: str) -> None:
        rows = self.store.dataset_rows(dataset, split, limit=ROW_PREVIEW_LIMIT)
        self.post_message(RowsLoaded(dataset, split, rows))

    @on(RowsLoaded)
    def rows_loaded(self, event: RowsLoaded) -> None:
        self.rows = event.rows
        self.rows_source = (event.dataset, event.split)
        self.action_preview()

    @on(Select.Changed, "#pg-model")
    @on(Input.Submitted, "#pg-row, #pg-free")
    def inputs_changed(self) -> None:
        self.action_preview()

    # What to run -------------------------------------------------------------------------
    def _row(self) -> RowInput:
        """The chosen row with where it came from, so the engine draws few-shot examples as an
        evaluation of that split would; free text replaces its input columns."""
        free = self.query_one("#pg-free", Input).value
        row = self._dataset_row()
        values: dict[str, object] = dict(row.data) if row is not None else {}
        if free:
            dataset = self.datasets.get(str(self.query_one("#pg-dataset", Select).value))
            columns = dataset.input_columns if dataset and dataset.input_columns else ["input"]
            values.update(dict.fromkeys(columns, free))
        if row is None or self.rows_source is None:
            return RowInput(values)
        name, split = self.rows_source
        return RowInput(values, name, split, row.idx)

    def _dataset_row(self) -> DatasetRow | None:
        if not self.rows:
            return None
        text = self.query_one("#pg-row", Input).value or "0"
        index = min(max(0, int(text)), len(self.rows) - 1) if text.lstrip("-").isdigit() else 0
        return self.rows[index]

    def _version(self) -> PromptVersion | None:
        return self.versions.get(str(self.query_one("#pg-version", Select).value))

    def _model(self) -> str | None:
        value = self.query_one("#pg-model", Select).value
        return value if isinstance(value, str) else None

    def _settings(self, version: PromptVersion) -> GenerationSettings:
        """The version's settings with the form's overrides, validated; BadInputError if bad."""
        settings: dict[str, object] = dict(version.settings)
        for input_id, key, cast in (("#pg-temperature", "temperature", float),
                                    ("#pg-max-tokens", "max_new_tokens", int),
                                    ("#pg-top-p", "top_p", float)):  # fmt: skip
            text = self.query_one(input_id, Input).value.strip()
            if text:
                settings[key] = cast(text)
        settings["logit_bias"] = parse_logit_bias(self.query_one("#pg-bias", Input).value)
        return GenerationSettings.from_version_settings(settings)

    def action_preview(self) -> None:
        version, model = self._version(), self._model()
        chosen = self.query_one("#pg-dataset", Select).value
        if isinstance(chosen, str) and tuple(chosen.rsplit("/", 1)) != self.rows_source:
            # The chosen split's rows are still loading (`rows_loaded` previews again): a
            # render now would fill the template from no row and flash a missing-variable error.
            return
        if version is not None and model is not None:
            self.query_one("#pg-token-count", Static).update(f"rendering with {model}…")
            self.render_preview(version, self._row(), model)

    @work(thread=True, exclusive=True, exit_on_error=False, group="preview", description="Render")
    def render_preview(self, version: PromptVersion, row: RowInput, model: str) -> None:
        preview = self.engine.render_preview(version_to_content(version), row, model)
        self.post_message(PreviewRendered(preview))

    @on(PreviewRendered)
    def show_preview(self, event: PreviewRendered) -> None:
        preview = event.preview
        self.query_one("#pg-prompt", Static).update(preview.text)
        count = self.query_one("#pg-token-count", Static)
        count.update(f"{preview.token_count} / {preview.context_window} tokens")
        count.set_class(not preview.fits, "error-text")

    # Logit bias --------------------------------------------------------------------------
    @on(Input.Changed, "#pg-bias")
    def bias_changed(self, event: Input.Changed) -> None:
        model = self._model()
        try:
            bias = parse_logit_bias(event.value)
        except ValueError as exc:
            self.query_one("#pg-bias-preview", Static).update(str(exc))
            return
        if model is not None and bias:
            self.tokenize_bias(model, bias)
        else:
            self.query_one("#pg-bias-preview", Static).update("")

    @work(thread=True, exclusive=True, exit_on_error=False, group="bias", description="Logit bias")
    def tokenize_bias(self, model: str, bias: dict[str, float]) -> None:
        self.post_message(BiasTokenized(self.engine.tokenize_bias(model, bias)))

    @on(BiasTokenized)
    def show_bias(self, event: BiasTokenized) -> None:
        parts = [f"{t.string!r} {t.weight:+g} → {' | '.join(repr(p) for p in t.token_strings)}"
                 for t in event.tokens]  # fmt: skip
        self.query_one("#pg-bias-preview", Static).update("; ".join(parts))

    # Generation --------------------------------------------------------------------------
    def action_run_generation(self) -> None:
        version, model = self._version(), self._model()
        if version is None or model is None:
            self.notify("Pick a prompt version and a model first", severity="warning")
            return
        try:
            settings = self._settings(version)
        except ValueError as exc:
            self.notify(str(exc), severity="error")
            return
        row = self._row()
        self.render_preview(version, row, model)
        self.generate(model, version, row, settings)

    @work(
        thread=True, exclusive=True, exit_on_error=False, group="generation", description="Generate"
    )
    def generate(
        self, model: str, version: PromptVersion, row: RowInput, settings: GenerationSettings
    ) -> None:
        worker = get_current_worker()
        self.post_message(GenerationStarted())
        text, elapsed, first = "", 0.0, None
        for chunk in self.engine.stream_generate(
            model, version_to_content(version), row, settings, lambda: worker.is_cancelled
        ):
            if worker.is_cancelled:
                break
            elapsed = chunk.elapsed_s
            first = chunk.time_to_first_token_s
            if chunk.text:
                text += chunk.text
                self.post_message(TokensReceived(chunk.text, chunk.elapsed_s))
        self.post_message(GenerationFinished(text, elapsed, first, worker.is_cancelled))

    @on(GenerationStarted)
    def generation_started(self) -> None:
        self.generating = True
        self.output_text = ""
        self.first_token_s = None
        self.query_one("#pg-output", Static).update("")
        self.query_one("#pg-timing", Static).update("generating…")
        self.query_one("#pg-output-pane").add_class("-busy")

    @on(TokensReceived)
    def tokens_received(self, event: TokensReceived) -> None:
        if self.first_token_s is None:
            self.first_token_s = event.elapsed_s
        self.output_text += event.text
        self.query_one("#pg-output", Static).update(self.output_text)
        self.query_one("#pg-timing", Static).update(
            f"first token {self.first_token_s:.2f} s · {event.elapsed_s:.2f} s"
        )

    @on(GenerationFinished)
    def generation_finished(self, event: GenerationFinished) -> None:
        self.generating = False
        self.output_text = event.text
        self.query_one("#pg-output", Static).update(event.text)
        first = (
            f"first token {event.first_token_s:.2f} s · " if event.first_token_s is not None else ""
        )
        stopped = " · stopped" if event.stopped else ""
        self.query_one("#pg-timing", Static).update(
            f"{first}total {event.elapsed_s:.2f} s{stopped}"
        )
        self.query_one("#pg-output-pane").remove_class("-busy")

    def worker_failed(self, worker: Worker[object]) -> None:
        if worker.group == "preview":
            self.query_one("#pg-token-count", Static).update(f"not rendered: {worker.error}")
            self.query_one("#pg-prompt", Static).update("")
        if worker.group == "generation":
            self.generating = False
            self.query_one("#pg-output-pane").remove_class("-busy")
            self.query_one("#pg-timing", Static).update(f"failed: {worker.error}")

    def action_stop_generation(self) -> None:
        cancelled = self.workers.cancel_group(self, "generation")
        if not cancelled:
            self.notify("Nothing is running", timeout=2)

    def action_copy_output(self) -> None:
        if not self.output_text:
            self.notify("No output to copy yet", severity="warning", timeout=2)
            return
        self.app.copy_to_clipboard(self.output_text)
        self.notify("Output copied (OSC 52)", timeout=2)
