"""Prompts: list, edit (template, system, examples, settings), version history, diffs, labels."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from textual import on, work
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Input, Static, TabbedContent, TabPane, TextArea
from textual.worker import Worker, get_current_worker

from tunelab.tui.messages import (
    LabelMoved,
    PromptsLoaded,
    PromptVersionViewed,
    VersionChosenForPlayground,
    VersionSaved,
    VersionsDiffed,
    VersionsLoaded,
)
from tunelab.tui.screens.base import TunelabScreen
from tunelab.tui.screens.modals import AskTextModal, TextViewModal
from tunelab.tui.screens.optimize import (
    OptimizeModal,
    SearchLoaded,
    SearchModal,
    SearchProgressed,
    progress_line,
)
from tunelab.tui.widgets.nav_table import NavTable

if TYPE_CHECKING:
    from collections.abc import Callable

    from textual.app import ComposeResult

    from tunelab.engine.api.types import OptimizeProgress, OptimizeRequest
    from tunelab.store import Prompt, PromptVersion

NEW_TEMPLATE = "{{ text }}"


class PromptsScreen(TunelabScreen):
    """Edit prompts as immutable versions: saving identical content says it is unchanged."""

    CSS_PATH = "prompts.tcss"

    SCREEN_TITLE = "Prompts"
    AUTO_FOCUS = "#prompt-list"
    BINDINGS = [
        Binding("ctrl+s", "save_version", "Save", id="prompts-save",
                tooltip="Save the editor as a new version (unchanged content is not saved)"),
        Binding("n", "new_prompt", "New", id="prompts-new", tooltip="Start a new prompt"),
        Binding("m", "mark_version", "Mark", id="prompts-mark",
                tooltip="Mark the selected version as the left side of a diff"),
        Binding("d", "diff_versions", "Diff", id="prompts-diff",
                tooltip="Diff the marked (or previous) version against the selected one"),
        Binding("l", "move_label", "Label", id="prompts-label",
                tooltip="Point a label (e.g. production) at the selected version"),
        Binding("t", "try_version", "Try", id="prompts-try",
                tooltip="Open the selected version in the Playground"),
        Binding("o", "optimize_version", "Optimize", id="prompts-optimize",
                tooltip="Search demonstrations, instructions, scoring from the selected version"),
        Binding("O", "show_search", "Search", id="prompts-search",
                tooltip="The search from the selected version: scores, best diff, val/test gap"),
        Binding("T", "show_trend", "Trend", id="prompts-trend",
                tooltip="Chart a metric across the selected prompt's versions"),
        Binding("escape", "focus_lists", "Back", id="prompts-back",
                tooltip="Leave the editor and return to the prompt list"),
    ]  # fmt: skip

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.prompt_name: str | None = None
        self.versions: list[PromptVersion] = []
        self.marked_ref: str | None = None
        self.prompts_shown: list[Prompt] | None = None
        self.editing_ref: str | None = None
        """The version in the editor; None for a new prompt not saved yet."""
        self.saved_fields: tuple[str, str, str, str] | None = None
        """The editor's text as loaded (template, system, examples, settings), to tell edits."""
        self.after_save: Callable[[], object] | None = None
        """What to do once the pending save lands (leaving after "save" was chosen)."""

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        with Horizontal(id="prompts"):
            with Vertical(id="prompts-side"):
                yield Static("Prompts", classes="section-title")
                yield NavTable(id="prompt-list")
                yield Static("Versions", classes="section-title")
                yield NavTable(id="version-list")
            with Vertical(id="prompts-editor"):
                yield Static("", id="editor-title", classes="section-title")
                yield Input(placeholder="Version message (optional)", id="editor-message")
                with TabbedContent(id="editor-tabs"):
                    with TabPane("Template", id="tab-template"):
                        yield TextArea(id="edit-template", tab_behavior="indent")
                    with TabPane("System", id="tab-system"):
                        yield TextArea(id="edit-system")
                    with TabPane("Examples", id="tab-examples"):
                        yield TextArea(id="edit-examples")
                    with TabPane("Settings", id="tab-settings"):
                        yield TextArea(id="edit-settings")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.query_one("#prompt-list", NavTable).add_columns("Prompt", "Latest", "Labels")
        self.query_one("#version-list", NavTable).add_columns("Ver", "Labels", "Message")
        self.load_prompts()

    # Loading -----------------------------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="store", description="Prompts")
    def load_prompts(self) -> None:
        self.post_message(PromptsLoaded(self.store.list_prompts()))

    def reload_data(self) -> None:
        """Another session or the CLI may have saved a version or moved a label; the editor's
        text is left alone (only a different prompt or version, chosen by the user, loads)."""
        self.load_prompts()

    @on(PromptsLoaded)
    def show_prompts(self, event: PromptsLoaded) -> None:
        table = self.query_one("#prompt-list", NavTable)
        if event.prompts == self.prompts_shown and table.row_count:
            return
        changed = self.prompts_shown is not None
        self.prompts_shown = event.prompts
        keep = self.prompt_name or table.selected_key()
        table.clear()
        for prompt in event.prompts:
            labels = ", ".join(f"{k}→{v}" for k, v in prompt.labels.items())
            table.add_row(prompt.name, str(prompt.latest_version), labels, key=prompt.name)
        if self.prompt_name and all(p.name != self.prompt_name for p in event.prompts):
            # A new prompt not saved yet: list it, so a reload keeps the cursor (and the
            # editor's text) on it rather than on another prompt.
            table.add_row(self.prompt_name, "—", "unsaved", key=self.prompt_name)
        table.move_to_key(keep)
        if self.prompt_name is None and event.prompts:
            self.select_prompt(table.selected_key() or event.prompts[0].name)
        elif changed and any(p.name == self.prompt_name for p in event.prompts):
            self.load_versions(str(self.prompt_name))

    def select_prompt(self, name: str) -> None:
        self.prompt_name = name
        self.load_versions(name)

    @on(DataTable.RowHighlighted, "#prompt-list")
    def prompt_highlighted(self, event: DataTable.RowHighlighted) -> None:
        name = event.row_key.value
        table = self.query_one("#prompt-list", NavTable)
        if name != table.selected_key():
            return  # stale: the table was rebuilt and its cursor put back since
        if name is not None and name != self.prompt_name:
            current = self.prompt_name
            self.leave_then(
                lambda: self.select_prompt(str(name)), lambda: table.move_to_key(current)
            )

    @work(
        thread=True, exclusive=True, exit_on_error=False, group="versions", description="Versions"
    )
    def load_versions(self, name: str) -> None:
        self.post_message(VersionsLoaded(name, self.store.list_prompt_versions(name)))

    @on(VersionsLoaded)
    def show_versions(self, event: VersionsLoaded) -> None:
        if event.prompt_name != self.prompt_name:
            return
        self.versions = event.versions
        table = self.query_one("#version-list", NavTable)
        keep = table.selected_key()
        table.clear()
        for version in reversed(event.versions):
            marker = "*" if version.ref == self.marked_ref else ""
            table.add_row(
                f"{marker}{version.version}", ", ".join(version.labels), version.message,
                key=version.ref,
            )  # fmt: skip
        table.move_to_key(keep)
        if event.versions and (keep is None or not keep.startswith(f"{event.prompt_name}@")):
            table.move_cursor(row=0)
            self.load_into_editor(event.versions[-1])

    @on(DataTable.RowSelected, "#version-list")
    def version_selected(self, event: DataTable.RowSelected) -> None:
        version = self._version(event.row_key.value)
        if version is None:
            return

        def open_version() -> None:
            self.load_into_editor(version)
            self.query_one("#edit-template", TextArea).focus()

        if version.ref == self.editing_ref:
            open_version()
        else:
            self.leave_then(open_version)

    def _version(self, ref: str | None) -> PromptVersion | None:
        return next((v for v in self.versions if v.ref == ref), None)

    def selected_version(self) -> PromptVersion | None:
        return self._version(self.query_one("#version-list", NavTable).selected_key())

    def load_into_editor(self, version: PromptVersion) -> None:
        self.query_one("#editor-title", Static).update(f"Editing {version.ref}")
        self.query_one("#edit-template", TextArea).load_text(version.template)
        self.query_one("#edit-system", TextArea).load_text(version.system)
        examples = json.dumps(version.examples, indent=2, ensure_ascii=False)
        self.query_one("#edit-examples", TextArea).load_text(examples)
        self.query_one("#edit-settings", TextArea).load_text(self.engine.settings_toml(version))
        self.editing_ref = version.ref
        self.saved_fields = self.editor_fields()
        self.show_modified()
        self.post_message(PromptVersionViewed(version.ref))

    # Unsaved edits -----------------------------------------------------------------------
    def editor_fields(self) -> tuple[str, str, str, str]:
        template, system, examples, settings = (
            self.query_one(f"#edit-{name}", TextArea).text
            for name in ("template", "system", "examples", "settings")
        )
        return template, system, examples, settings

    def is_modified(self) -> bool:
        """The editor differs from the version it loaded (a new prompt is unsaved until v1)."""
        if self.prompt_name is None:
            return False
        return self.saved_fields is None or self.editor_fields() != self.saved_fields

    @on(TextArea.Changed)
    def show_modified(self) -> None:
        """The editor's title says `● modified` while it holds unsaved edits."""
        if self.editing_ref is None:
            return  # a new prompt's title already says it is unsaved
        marker = " · ● modified" if self.is_modified() else ""
        self.query_one("#editor-title", Static).update(f"Editing {self.editing_ref}{marker}")

    def unsaved_edits(self) -> str | None:
        if not self.is_modified():
            return None
        return self.editing_ref or f"New prompt {self.prompt_name}"

    def save_edits_then(self, proceed: Callable[[], object]) -> None:
        self.after_save = proceed
        self.action_save_version()

    def discard_edits(self) -> None:
        version = self._version(self.editing_ref)
        if version is not None:
            self.load_into_editor(version)
            return
        self.prompt_name = None  # a new prompt never saved: back to the stored ones
        self.prompts_shown = None
        self.load_prompts()

    def worker_failed(self, worker: Worker[object]) -> None:
        if worker.group == "save":
            self.after_save = None  # the save failed (its reason is shown): stay

    # Saving ------------------------------------------------------------------------------
    def action_save_version(self) -> None:
        if self.prompt_name is None:
            self.notify("Create a prompt first (n)", severity="warning")
            return
        self.save_version(
            self.prompt_name,
            self.query_one("#edit-template", TextArea).text,
            self.query_one("#edit-system", TextArea).text,
            self.query_one("#edit-examples", TextArea).text,
            self.query_one("#edit-settings", TextArea).text,
            self.query_one("#editor-message", Input).value,
        )

    @work(thread=True, exclusive=True, exit_on_error=False, group="save", description="Save")
    def save_version(
        self, name: str, template: str, system: str, examples: str, settings: str, message: str
    ) -> None:
        content = self.engine.content_from_fields(template, system, examples or "[]", settings)
        result = self.store.save_prompt_version(name, content, message=message)
        self.post_message(VersionSaved(result.version, result.created))

    @on(VersionSaved)
    def version_saved(self, event: VersionSaved) -> None:
        if event.created:
            self.notify(f"Saved {event.version.ref}", timeout=3)
            self.query_one("#editor-message", Input).value = ""
        else:
            self.notify(f"Unchanged: identical to {event.version.ref}; nothing saved", timeout=4)
        self.prompt_name = event.version.prompt_name
        self.editing_ref = event.version.ref
        self.saved_fields = self.editor_fields()
        self.show_modified()
        self.query_one("#version-list", NavTable).clear()
        self.load_prompts()
        self.load_versions(event.version.prompt_name)
        proceed, self.after_save = self.after_save, None
        if proceed is not None:
            proceed()

    def action_new_prompt(self) -> None:
        self.leave_then(self.ask_new_prompt)

    def ask_new_prompt(self) -> None:
        def created(name: str | None) -> None:
            if not name:
                return
            self.prompt_name = name
            self.editing_ref = None
            self.saved_fields = None
            self.versions = []
            self.query_one("#version-list", NavTable).clear()
            self.query_one("#editor-title", Static).update(f"New prompt {name} (ctrl+s saves v1)")
            for area_id, text in (
                ("#edit-template", NEW_TEMPLATE), ("#edit-system", ""),
                ("#edit-examples", "[]"), ("#edit-settings", 'mode = "chat"\nreasoning = "none"'),
            ):  # fmt: skip
                self.query_one(area_id, TextArea).load_text(text)
            self.query_one("#edit-template", TextArea).focus()

        self.app.push_screen(
            AskTextModal("Name of the new prompt", placeholder="classify"), created
        )

    # Diff and labels ---------------------------------------------------------------------
    def action_mark_version(self) -> None:
        version = self.selected_version()
        if version is None:
            return
        self.marked_ref = None if self.marked_ref == version.ref else version.ref
        self.notify(f"Marked {version.ref} for diff" if self.marked_ref else "Mark cleared")
        if self.prompt_name:
            self.show_versions(VersionsLoaded(self.prompt_name, self.versions))

    def action_diff_versions(self) -> None:
        version = self.selected_version()
        if version is None:
            return
        if self.marked_ref and self.marked_ref != version.ref:
            left = self.marked_ref
        else:
            earlier = [v for v in self.versions if v.version < version.version]
            if not earlier:
                self.notify("Nothing to diff: mark another version with m", severity="warning")
                return
            left = earlier[-1].ref
        self.diff_versions(left, version.ref)

    @work(thread=True, exclusive=True, exit_on_error=False, group="diff", description="Diff")
    def diff_versions(self, ref_a: str, ref_b: str) -> None:
        self.post_message(VersionsDiffed(ref_a, ref_b, self.engine.diff_versions(ref_a, ref_b)))

    @on(VersionsDiffed)
    def show_diff(self, event: VersionsDiffed) -> None:
        text = "\n".join(event.lines) or "(no differences)"
        self.app.push_screen(TextViewModal(f"{event.ref_a} → {event.ref_b}", text))

    def action_move_label(self) -> None:
        version = self.selected_version()
        if version is None:
            return

        def chosen(label: str | None) -> None:
            if label:
                self.move_label(version.ref, label)

        self.app.push_screen(
            AskTextModal(f"Label to point at {version.ref}", placeholder="production"), chosen
        )

    @work(thread=True, exclusive=True, exit_on_error=False, group="save", description="Label")
    def move_label(self, ref: str, label: str) -> None:
        version, previous = self.store.set_label(ref, label)
        self.post_message(LabelMoved(version, label, previous))

    @on(LabelMoved)
    def label_moved(self, event: LabelMoved) -> None:
        moved = f" (was v{event.previous_version})" if event.previous_version else ""
        self.notify(f"{event.label} → {event.version.ref}{moved}", timeout=3)
        self.load_prompts()
        self.load_versions(event.version.prompt_name)

    def action_try_version(self) -> None:
        version = self.selected_version()
        if version is not None:
            self.post_message(VersionChosenForPlayground(version.ref))

    def action_show_trend(self) -> None:
        from tunelab.engine.api.types import TrendRequest
        from tunelab.tui.screens.trend import TrendModal

        name = self.prompt_name or self.query_one("#prompt-list", NavTable).selected_key()
        if name is None:
            self.notify("Pick a prompt first", severity="warning")
            return
        self.app.push_screen(TrendModal(self.engine, TrendRequest(prompt_name=name)))

    def action_focus_lists(self) -> None:
        self.query_one("#version-list", NavTable).focus()

    # Prompt optimization -----------------------------------------------------------------
    def action_optimize_version(self) -> None:
        version = self.selected_version()
        if version is None:
            return
        datasets = {
            d.name: d.task == "classification" and bool(d.labels)
            for d in self.store.list_datasets()
        }
        if not datasets:
            self.notify("No dataset to search on: add one first", severity="warning")
            return

        def chosen(request: OptimizeRequest | None) -> None:
            if request is not None:
                self.notify(f"Optimizing from {request.prompt} (budget {request.budget})…")
                self.run_search(request)

        self.app.push_screen(OptimizeModal(version.ref, datasets), chosen)

    @work(thread=True, exclusive=True, exit_on_error=False, group="optimize",
          description="Optimize")  # fmt: skip
    def run_search(self, request: OptimizeRequest) -> None:
        worker = get_current_worker()

        def progressed(progress: OptimizeProgress) -> None:
            self.post_message(SearchProgressed(progress))

        self.engine.optimize(request, progressed, lambda: worker.is_cancelled)
        self._post_search(request.prompt)

    def _post_search(self, seed_ref: str) -> None:
        history = self.engine.search_history(seed_ref)
        best = history.best_ref
        diff = self.engine.diff_versions(history.seed_ref, best) if best else []
        self.post_message(SearchLoaded(history, diff))

    @on(SearchProgressed)
    def search_progressed(self, event: SearchProgressed) -> None:
        self.notify(progress_line(event.progress), timeout=3)

    def action_show_search(self) -> None:
        version = self.selected_version()
        if version is not None:
            self.load_search(version.ref)

    @work(thread=True, exclusive=True, exit_on_error=False, group="store",
          description="Search")  # fmt: skip
    def load_search(self, seed_ref: str) -> None:
        self._post_search(seed_ref)

    @on(SearchLoaded)
    def search_loaded(self, event: SearchLoaded) -> None:
        self.app.push_screen(SearchModal(event.history, event.diff))
        if self.prompt_name:
            self.load_versions(self.prompt_name)
