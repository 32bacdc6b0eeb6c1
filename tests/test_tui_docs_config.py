"""Settings are read strictly and round-trip; docs list every binding id and every setting."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tunelab.tui.app import TunelabApp
from tunelab.tui.config import (
    SETTING_NAMES,
    ConfigError,
    UserSettings,
    load_settings,
    save_settings,
)
from tunelab.tui.keys import all_bindings
from tunelab.tui.keys_doc import markdown_rows

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_every_binding_has_an_id_and_tooltip_and_is_documented() -> None:
    keys_doc = (DOCS / "keys.md").read_text()
    for owner, binding in all_bindings(TunelabApp):
        assert binding.id, f"{owner} binding {binding.key} has no id"
        assert binding.tooltip, f"{owner} binding {binding.id} has no tooltip"
        assert re.match(r"^[a-z0-9]+(-[a-z0-9]+)*$", binding.id), binding.id
        assert f"`{binding.id}`" in keys_doc, f"{binding.id} missing from docs/keys.md"


def test_keys_doc_table_matches_the_bindings() -> None:
    documented = [line for line in (DOCS / "keys.md").read_text().splitlines()
                  if line.startswith("| `")]  # fmt: skip
    assert documented == markdown_rows(), "regenerate with python -m tunelab.tui.keys_doc"


def test_every_setting_is_documented() -> None:
    config_doc = (DOCS / "config.md").read_text()
    for name in SETTING_NAMES:
        assert f"`{name}`" in config_doc


def test_settings_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "tui.toml"
    settings = UserSettings(theme="tunelab-light", keymap={"show-runs": "f4", "quit": "ctrl+x"})
    save_settings(settings, path)
    assert load_settings(path) == settings


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    assert load_settings(tmp_path / "absent.toml") == UserSettings()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("colour = 'red'\n", "unknown setting(s) colour"),
        ("price_per_gpu_hour = 2.0\n", "moved to the workspace config"),
        ("keymap = 3\n", "[keymap]"),
        ("theme = \n", "not valid TOML"),
    ],
)
def test_bad_settings_name_the_file(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "tui.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(path) in str(info.value)
    assert needle in str(info.value)


def test_env_var_overrides_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tunelab.tui.config import config_path

    monkeypatch.setenv("TUNELAB_CONFIG", str(tmp_path / "x.toml"))
    assert config_path() == tmp_path / "x.toml"


def test_user_theme_files_load_strictly(tmp_path: Path) -> None:
    from tunelab.themes import ThemeFileError, load_user_themes

    (tmp_path / "ocean.toml").write_text(
        'name = "ocean"\nprimary = "#1E88E5"\ndark = true\n[variables]\nborder = "#1E88E5"\n'
    )
    themes = load_user_themes(tmp_path)
    assert [t.name for t in themes] == ["ocean"]
    (tmp_path / "bad.toml").write_text('name = "bad"\nprimary = "not-a-colour"\n')
    with pytest.raises(ThemeFileError, match=r"bad\.toml: primary"):
        load_user_themes(tmp_path)
    (tmp_path / "bad.toml").write_text('name = "bad"\nprimary = "#000000"\nshade = 1\n')
    with pytest.raises(ThemeFileError, match="unknown theme key"):
        load_user_themes(tmp_path)


async def test_user_theme_is_registered_and_selectable() -> None:
    from textual.theme import Theme

    from tests.fake_engine import FakeEngine
    from tunelab.store import Store
    from tunelab.tui.app import make_app

    store = Store.memory()
    ocean = Theme(name="ocean", primary="#1E88E5")
    app = make_app(
        store, engine=FakeEngine(store), settings=UserSettings(theme="ocean"), user_themes=[ocean]
    )
    async with app.run_test(size=(80, 24)):
        assert app.theme == "ocean"
