"""The tunelab TUI: an App with one mode per screen, built by `make_app` for the CLI and tests.

Importing this module must stay cheap (no torch): the engine loads models lazily, on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import App
from textual.binding import Binding

from tunelab.themes import BUILTIN_THEMES, UnknownThemeError
from tunelab.tui.commands import TunelabCommands
from tunelab.tui.config import UserSettings, config_path, load_settings, save_settings
from tunelab.tui.messages import (
    ActivityChecked,
    DatabaseChecked,
    PromptVersionViewed,
    RunChosen,
    RunsChosenForCompare,
    ScreenShown,
    SettingsChanged,
    VersionChosenForPlayground,
)
from tunelab.tui.screens.help import HelpModal, describe_bindings

if TYPE_CHECKING:
    from textual.screen import Screen
    from textual.theme import Theme

    from tunelab.engine.api.facade import EngineProtocol
    from tunelab.engine.api.types import Activity
    from tunelab.store import Store, Workspace
    from tunelab.tui.screens.base import TunelabScreen

_GO = Binding.Group("Go", compact=True)

WATCH_SECONDS = 1.0
"""How often the app asks the database whether anyone committed (a one-row query)."""
ACTIVITY_EVERY_CHECKS = 5
"""Count what runs at least this often (in watches), since a worker that died commits nothing."""


def _go(key: str, mode: str, title: str) -> Binding:
    return Binding(
        key, f"show_screen('{mode}')", title, id=f"show-{mode}", group=_GO,
        tooltip=f"Switch to the {title} screen",
    )  # fmt: skip


SCREENS_BY_MODE: dict[str, tuple[str, str, str]] = {
    "home": ("Home", "home", "HomeScreen"),
    "prompts": ("Prompts", "prompts", "PromptsScreen"),
    "playground": ("Playground", "playground", "PlaygroundScreen"),
    "runs": ("Runs", "runs", "RunsScreen"),
    "compare": ("Compare", "compare", "CompareScreen"),
    "finetune": ("Fine-tune", "finetune", "FinetuneScreen"),
    "models": ("Models", "library", "ModelsScreen"),
    "datasets": ("Datasets", "library", "DatasetsScreen"),
    "report": ("Report", "report", "ReportScreen"),
}
"""Mode → (title, module in tui/screens, class); modules import on first visit, for a fast start."""


def screen_class(mode: str) -> type[TunelabScreen]:
    """Import a screen's module only when the screen is first shown."""
    import importlib

    _title, module_name, class_name = SCREENS_BY_MODE[mode]
    module = importlib.import_module(f"tunelab.tui.screens.{module_name}")
    screen_type: type[TunelabScreen] = getattr(module, class_name)
    return screen_type


class TunelabApp(App[None]):
    """Keyboard-driven workbench: prompts, playground, runs, compare, fine-tune, models, data."""

    TITLE = "tunelab"
    CSS_PATH = ["app.tcss", "screens/home.tcss"]
    """Screens load their own stylesheets (next to them) when first shown, which parses every
    loaded stylesheet again; Home, the first screen, has its own parsed with the app's."""
    COMMANDS = App.COMMANDS | {TunelabCommands}
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        _go("1", "home", "Home"),
        _go("2", "prompts", "Prompts"),
        _go("3", "playground", "Playground"),
        _go("4", "runs", "Runs"),
        _go("5", "compare", "Compare"),
        _go("6", "finetune", "Fine-tune"),
        _go("7", "models", "Models"),
        _go("8", "datasets", "Datasets"),
        _go("9", "report", "Report"),
        Binding("ctrl+t", "cycle_theme", "Theme", id="cycle-theme",
                tooltip="Switch to the next built-in theme (saved to your settings)"),
        Binding("ctrl+p", "command_palette", "Commands", id="command-palette", show=False,
                tooltip="Search every action and screen"),
        Binding("ctrl+q", "quit", "Quit", id="quit", priority=True, show=False,
                tooltip="Quit tunelab (listed under ? rather than in the footer, as in Textual)"),
    ]  # fmt: skip
    """Number keys switch screens; they type normally inside text fields."""

    def __init__(
        self,
        store: Store,
        engine: EngineProtocol,
        settings: UserSettings | None = None,
        settings_path: Path | None = None,
        workspace: Workspace | None = None,
        user_themes: list[Theme] | None = None,
        welcome: str | None = None,
    ) -> None:
        super().__init__()
        self.welcome = welcome
        """Text shown in a dismissable modal on start (the demo's guided path)."""
        self.store = store
        self.engine = engine
        self.settings = settings or UserSettings()
        self.settings_path = settings_path
        self.workspace = workspace
        self.data_version: int | None = None
        """The database's change counter at the last watch; screens compare theirs to it."""
        self.viewed_prompt_ref: str | None = None
        """The prompt version last opened in Prompts or chosen in the Playground."""
        self.activity: Activity | None = None
        """What runs in the workspace (any session), as last counted; None until counted."""
        self._checks_since_activity = ACTIVITY_EVERY_CHECKS
        for theme in [*BUILTIN_THEMES.values(), *(user_themes or [])]:
            self.register_theme(theme)
        if self.settings.theme not in self.available_themes:
            raise UnknownThemeError(self.settings.theme, list(self.available_themes))
        self.theme = self.settings.theme
        for mode in SCREENS_BY_MODE:
            self.add_mode(mode, self._screen_factory(mode))
        self.set_keymap(self.settings.keymap)
        # The footer docks the palette key at its right edge, so narrow terminals never clip
        # it; it finds that key by name, so follow a remapping.
        remapped = self.settings.keymap.get("command-palette", "")
        if remapped.strip():
            # Per instance on purpose: changing the class would leak into other apps.
            self.COMMAND_PALETTE_BINDING = remapped.split(",")[0].strip()  # type: ignore[misc]

    def _screen_factory(self, mode: str) -> Callable[[], Screen]:
        return lambda: screen_class(mode)(self.store, self.engine, self.settings)

    def screen_titles(self) -> dict[str, str]:
        return {mode: title for mode, (title, _module, _cls) in SCREENS_BY_MODE.items()}

    def screen_type(self, mode: str) -> type[TunelabScreen]:
        return screen_class(mode)

    def key_for(self, binding: Binding) -> str:
        """How the footer shows a binding's key, after the user's keymap."""
        remapped = self._keymap.get(binding.id or "", "") if binding.id else ""
        keys = remapped or binding.key
        first = keys.split(",")[0].strip()
        display = binding.key_display if not remapped else None
        return self.get_key_display(Binding(first, binding.action, key_display=display))

    async def run_screen_action(self, mode: str, action: str) -> None:
        """Run a screen's action from anywhere (the palette): switch to its screen first."""
        if self.asked_before_leaving(
            mode, lambda: self.call_later(self.run_screen_action, mode, action)
        ):
            return
        if self.current_mode != mode:
            await self.switch_mode(mode)
        await self.run_action(action, self.get_screen_stack(mode)[0])

    def on_mount(self) -> None:
        self.check_database()
        self.set_interval(WATCH_SECONDS, self.check_database)
        self.switch_mode("home")
        if self.welcome:
            from tunelab.tui.screens.modals import TextViewModal

            self.push_screen(TextViewModal("Guided path", self.welcome))
        if self.settings.keymap:
            self.call_after_refresh(self.check_keymap)

    def check_keymap(self) -> None:
        """Warn about keymap ids that match no binding (after the first frame: it imports all
        screens)."""
        from tunelab.tui.keys import all_bindings

        known = {binding.id for _owner, binding in all_bindings(type(self))}
        unknown = sorted(set(self.settings.keymap) - known)
        if unknown:
            where = self.settings_path or "settings"
            self.notify(
                f"{where}: [keymap] has unknown binding id(s) {', '.join(unknown)}; "
                "see docs/keys.md or press ?",
                severity="warning",
                timeout=10,
            )

    # Following the database --------------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="watch", description="Watch")
    def check_database(self) -> None:
        """Off the UI thread: reap ended job workers, then read the change counter."""
        from tunelab.engine.training.jobs import reap_workers

        reap_workers()
        try:
            version = self.store.data_version()
        except Exception:  # a closed or damaged store: the screens' own loads report it
            return
        self.post_message(DatabaseChecked(version))
        self._checks_since_activity += 1
        if version != self.data_version or self._checks_since_activity >= ACTIVITY_EVERY_CHECKS:
            self._checks_since_activity = 0
            try:
                activity = self.engine.activity()
            except Exception:  # as above: the status line keeps its last count
                return
            self.post_message(ActivityChecked(activity))

    @on(ActivityChecked)
    def activity_checked(self, event: ActivityChecked) -> None:
        self.activity = event.activity
        from tunelab.tui.screens.base import TunelabScreen

        for screen in self.screen_stack:
            if isinstance(screen, TunelabScreen):
                screen.show_status(self.workspace_label(), event.activity)

    @on(ScreenShown)
    def screen_shown(self, event: ScreenShown) -> None:
        from tunelab.tui.screens.base import TunelabScreen

        if isinstance(event.screen, TunelabScreen):
            event.screen.show_tabs(self.screen_tabs())
            event.screen.show_status(self.workspace_label(), self.activity)

    def workspace_label(self) -> str:
        """The workspace folder as the status line shows it (home as ~)."""
        if self.workspace is None:
            return "(no workspace folder)"
        root = str(self.workspace.root)
        home = str(Path.home())
        return "~" + root[len(home) :] if root == home or root.startswith(home + "/") else root

    def screen_tabs(self) -> tuple[tuple[str, str], ...]:
        """(key, title) of every screen switch, after the user's keymap."""
        return tuple(
            (self.key_for(binding), binding.description)
            for binding in self.BINDINGS
            if isinstance(binding, Binding) and binding.group is _GO
        )

    async def action_quit(self) -> None:
        """Quit; while evaluations or jobs run, ask first and say they keep running."""
        from tunelab.tui.screens.confirm import QuestionModal, QuitModal

        if isinstance(self.screen, QuestionModal):
            return
        if self.asked_before_leaving(None, lambda: self.call_later(self.action_quit)):
            return  # unsaved edits: saved or discarded first, or the user stays
        if self.activity is None or self.activity.total == 0:
            self.exit()
            return

        def answered(quit_anyway: bool | None) -> None:
            if quit_anyway:
                self.exit()

        self.push_screen(QuitModal(self.activity), answered)

    @on(DatabaseChecked)
    def database_checked(self, event: DatabaseChecked) -> None:
        if event.version == self.data_version:
            return
        first = self.data_version is None
        self.data_version = event.version
        if first:
            return
        from tunelab.tui.screens.base import TunelabScreen

        # The current mode's screens reload now (beneath a modal too); the other modes' screens
        # catch up when shown again (`TunelabScreen.catch_up`).
        for screen in self.screen_stack:
            if isinstance(screen, TunelabScreen):
                screen.data_changed(event.version)

    async def action_show_screen(self, mode: str) -> None:
        if not self.asked_before_leaving(mode, lambda: self.switch_mode(mode)):
            await self.switch_mode(mode)

    def show_screen(self, mode: str) -> object:
        if self.asked_before_leaving(mode, lambda: self.switch_mode(mode)):
            return None
        return self.switch_mode(mode)

    def asked_before_leaving(self, mode: str | None, proceed: Callable[[], object]) -> bool:
        """When leaving the current screen (for `mode`, or quitting: None) would drop unsaved
        edits, ask first (save / discard / stay) and `proceed` after; False: nothing to ask."""
        from tunelab.tui.screens.base import TunelabScreen

        screen = next((s for s in self.screen_stack if isinstance(s, TunelabScreen)), None)
        if mode == self.current_mode or screen is None or screen.unsaved_edits() is None:
            return False
        screen.leave_then(proceed)
        return True

    def action_show_help(self) -> None:
        if isinstance(self.screen, HelpModal):
            return
        title = self.screen.sub_title or self.screen.__class__.__name__
        self.push_screen(HelpModal(title, describe_bindings(self.screen.active_bindings, title)))

    def action_cycle_theme(self) -> None:
        names = list(BUILTIN_THEMES)
        index = names.index(self.theme) if self.theme in names else -1
        self.theme = names[(index + 1) % len(names)]
        self.notify(f"Theme: {self.theme}", timeout=2)

    def watch_theme(self, theme: str) -> None:
        """Persist the theme choice, however it was made (key, palette or settings)."""
        if theme == self.settings.theme:
            return
        self.settings.theme = theme
        self.save_user_settings()

    @on(SettingsChanged)
    def save_user_settings(self) -> None:
        """Write the settings file (when the app has one: the CLI's, not the tests')."""
        if self.settings_path is not None:
            try:
                save_settings(self.settings, self.settings_path)
            except OSError as exc:
                self.notify(f"could not save settings: {exc}", severity="warning")

    @on(PromptVersionViewed)
    def version_viewed(self, event: PromptVersionViewed) -> None:
        self.viewed_prompt_ref = event.prompt_ref

    @on(RunChosen)
    async def open_run(self, event: RunChosen) -> None:
        await self.switch_mode("runs")
        from tunelab.tui.screens.runs import RunsScreen

        if isinstance(self.screen, RunsScreen):
            self.screen.open_run(event.run_id)

    @on(RunsChosenForCompare)
    async def compare_runs(self, event: RunsChosenForCompare) -> None:
        await self.switch_mode("compare")
        from tunelab.tui.screens.compare import CompareScreen

        if isinstance(self.screen, CompareScreen):
            self.screen.compare(event.run_ids)

    @on(VersionChosenForPlayground)
    async def try_version(self, event: VersionChosenForPlayground) -> None:
        if self.asked_before_leaving(
            "playground", lambda: self.post_message(VersionChosenForPlayground(event.prompt_ref))
        ):
            return
        await self.switch_mode("playground")
        from tunelab.tui.screens.playground import PlaygroundScreen

        if isinstance(self.screen, PlaygroundScreen):
            self.screen.choose_version(event.prompt_ref)


def make_app(
    workspace_or_store: Workspace | Store,
    engine: EngineProtocol | None = None,
    settings: UserSettings | None = None,
    settings_path: Path | None = None,
    user_themes: list[Theme] | None = None,
    welcome: str | None = None,
) -> TunelabApp:
    """Build the app over a workspace (CLI) or a store (tests); the real engine by default."""
    from tunelab.store import Store, Workspace

    workspace: Workspace | None = None
    if isinstance(workspace_or_store, Workspace):
        workspace = workspace_or_store
        store = workspace.open_store()
    elif isinstance(workspace_or_store, Store):
        store = workspace_or_store
    else:
        raise TypeError(f"make_app needs a Workspace or a Store, not {type(workspace_or_store)}")
    if engine is None:
        from tunelab.engine.api.facade import Engine

        engine = Engine(store, workspace)
    return TunelabApp(
        store, engine, settings=settings, settings_path=settings_path, workspace=workspace,
        user_themes=user_themes, welcome=welcome,
    )  # fmt: skip


def run_app(workspace: Workspace, welcome: str | None = None) -> None:
    """Open the TUI on a workspace with the user's settings; errors in the settings file stop it."""
    from tunelab.themes import ThemeFileError, load_user_themes
    from tunelab.tui.config import ConfigError

    path = config_path()
    settings = load_settings(path)
    try:
        user_themes = load_user_themes()
    except ThemeFileError as exc:
        raise ConfigError(str(exc)) from exc
    app = make_app(
        workspace, settings=settings, settings_path=path, user_themes=user_themes, welcome=welcome
    )
    try:
        app.run()
    finally:
        app.store.close()
