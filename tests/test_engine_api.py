"""The typed engine API both front ends call: one logit-bias parser, one row renderer, true
compare counts. Each test holds the TUI path and the CLI path to the same answer."""

from __future__ import annotations

import json
import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from textual.pilot import Pilot

from tests import compare_helpers as h
from tests.conftest import run_cli
from tests.tui_helpers import screen_text, settle, show_screen
from tunelab.engine.api.facade import Engine
from tunelab.engine.api.types import RowInput
from tunelab.engine.errors import BadInputError
from tunelab.engine.prompts.settings import format_logit_bias, parse_logit_bias
from tunelab.engine.prompts.text import version_to_content
from tunelab.store import NewDataset, NewSplit, PromptContent, Store, Workspace
from tunelab.tui.app import TunelabApp, make_app

SIZE = (100, 30)
WAIT_S = 120


async def wait_for_text(app: TunelabApp, pilot: Pilot[None], needle: str) -> str:
    """Let the app run until `needle` is on screen (a model load can take a while)."""
    deadline = time.monotonic() + WAIT_S
    while needle not in (text := screen_text(app)):
        assert time.monotonic() < deadline, f"{needle!r} never showed; the screen:\n{text}"
        await pilot.pause(0.05)
    return text


weights = st.floats(min_value=-100, max_value=100, allow_nan=False)
keys = st.text(min_size=1, max_size=12)
bare_keys = st.text(
    st.characters(blacklist_characters=",=\"'", blacklist_categories=("Zs", "Cc")),
    min_size=1,
    max_size=12,
).filter(lambda k: k == k.strip())


# One logit-bias parser -------------------------------------------------------------------
@given(st.dictionaries(keys, weights, max_size=6))
def test_logit_bias_text_round_trips(bias: dict[str, float]) -> None:
    """What the Playground writes into its bias field parses back to the same mapping."""
    assert parse_logit_bias(format_logit_bias(bias)) == bias


@given(st.dictionaries(bare_keys, weights, min_size=1, max_size=6))
def test_cli_items_and_playground_text_parse_alike(bias: dict[str, float]) -> None:
    items = [f"{key}={weight!r}" for key, weight in bias.items()]
    assert parse_logit_bias(items) == parse_logit_bias(", ".join(items)) == bias


@given(st.text(max_size=30))
def test_any_bias_text_parses_or_is_a_one_line_bad_input(text: str) -> None:
    try:
        bias = parse_logit_bias(text)
    except BadInputError as exc:
        assert "\n" not in str(exc)
        return
    assert all(key and -100 <= weight <= 100 for key, weight in bias.items())


@pytest.mark.parametrize(
    ("text", "message"),
    [("=2", "STRING=WEIGHT"), ("yes", "STRING=WEIGHT"), ("yes=lots", "'lots' is not a number"),
     ("yes=500", "-100 to 100"), ("yes=nan", "-100 to 100"), ('"yes=2', "not closed")],
)  # fmt: skip
def test_bad_bias_is_refused(text: str, message: str) -> None:
    with pytest.raises(BadInputError, match=re.escape(message)):
        parse_logit_bias(text)


def test_prompt_new_takes_the_playground_bias_text(workspace: Workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`--logit-bias 'yes=2, no=-2'` is two entries, as in the Playground (it was one key)."""
    template = tmp_path / "t.j2"
    template.write_text("{{ text }}")
    args = ["prompt", "new", "p", "--template-file", str(template), "--json",
            "--logit-bias", "yes=2, no=-2", "--logit-bias", '" maybe"=1']  # fmt: skip
    result = run_cli(*args, workspace=workspace)
    assert result.returncode == 0, result.stderr
    shown = json.loads(run_cli("prompt", "show", "p@1", "--json", workspace=workspace).stdout)
    assert shown["settings"]["logit_bias"] == {"yes": 2.0, "no": -2.0, " maybe": 1.0}
    bad = run_cli(*args[:-4], "--logit-bias", "yes=500", workspace=workspace)
    assert bad.returncode == 2 and "-100 to 100" in bad.stderr and "Traceback" not in bad.stderr


def test_label_history_takes_any_prompt_ref(workspace: Workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    template = tmp_path / "t.j2"
    template.write_text("{{ text }}")
    run_cli("prompt", "new", "p", "--template-file", str(template), workspace=workspace)
    assert run_cli("prompt", "label", "p@1", "prod", workspace=workspace).returncode == 0
    for ref in ("p", "p@1", "p:prod"):
        result = run_cli("prompt", "label", ref, "--history", "--json", workspace=workspace)
        assert result.returncode == 0, result.stderr
        assert [e["label"] for e in json.loads(result.stdout)] == ["prod"]
    bad = run_cli("prompt", "label", "p@x", "--history", workspace=workspace)
    assert bad.returncode == 2 and "version after @" in bad.stderr


# Compare: true counts ---------------------------------------------------------------------
async def test_compare_screen_shows_the_cli_counts_past_the_highlights(
    workspace: Workspace,
) -> None:
    """12 fixed rows: the CLI says 12, and so must the TUI (it counted the 5 it lists)."""
    store = workspace.open_store()
    base = h.base_model(store)
    ds = h.dataset(store, n=20)
    pv = h.prompt(store, "p", "Classify: {{ text }}")
    a = h.classification_run(store, pv, base, ds, [0] * 12 + [1] * 8)
    b = h.classification_run(store, pv, base, ds, [1] * 12 + [1] * 7 + [0])
    result = run_cli("compare", str(a.id), str(b.id), "--json", workspace=workspace)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["fixed"], data["broken"]) == (12, 1)
    app = make_app(store, engine=Engine(store))
    try:
        async with app.run_test(size=SIZE) as pilot:
            await show_screen(app, pilot, "5", "Compare")
            app.screen.compare([a.id, b.id])  # type: ignore[attr-defined]
            await settle(app, pilot)
            await pilot.press("t")
            await wait_for_text(app, pilot, "fixed 12 · broken 1")
    finally:
        store.close()


# One row renderer: Playground, `generate --show-prompt` and `eval` agree -------------------
TRAIN = [{"text": f"review number {i}: " + "good " * (i % 4), "label": "pos" if i % 2 else "neg"}
         for i in range(10)]  # fmt: skip


def _fewshot_workspace(workspace: Workspace) -> Store:
    store = workspace.open_store()
    store.add_dataset(
        NewDataset(
            "reviews", "tests", "fp-reviews",
            [NewSplit("train", TRAIN, "fp-train"), NewSplit("test", TRAIN[:4], "fp-test")],
            task="classification", input_columns=["text"], reference_column="label",
            labels=["pos", "neg"], metrics=["accuracy"],
        )
    )  # fmt: skip
    content = PromptContent(
        template="Review: {{ text }}\nLabel:",
        mode="plain",
        settings={"max_new_tokens": 2, "fewshot": {"k": 3, "split": "train", "seed": 1}},
    )
    store.save_prompt_version("fs", content)
    return store


@pytest.mark.model
async def test_playground_generate_and_eval_render_a_fewshot_row_alike(
    workspace: Workspace,
) -> None:
    from tunelab.engine.evaluation.plan import load, prepare, render_jobs
    from tunelab.engine.evaluation.request import EvalRequest

    store = _fewshot_workspace(workspace)
    row = 2
    result = run_cli(
        "generate", "--prompt", "fs@1", "--dataset", "reviews", "--split", "train",
        "--row", str(row), "--show-prompt", workspace=workspace,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    cli_tokens = int(re.search(r"--- prompt \((\d+) tokens\) ---", result.stderr).group(1))  # type: ignore[union-attr]
    cli_text = result.stderr.split("tokens) ---\n", 1)[1].split("\n--- output ---", 1)[0]
    assert cli_text.count("Label:") == 4  # three drawn examples and the row itself

    version = store.get_prompt_version("fs@1")
    engine = Engine(store)
    data = store.dataset_rows("reviews", "train", indices=[row])[0].data
    preview = engine.render_preview(
        version_to_content(version), RowInput(data, "reviews", "train", row), "builtin"
    )
    assert preview.token_count == cli_tokens
    assert preview.text.rstrip("\n") == cli_text.rstrip("\n")

    plan = prepare(store, EvalRequest(prompt="fs@1", model="builtin", dataset="reviews",
                                      split="train", limit=row + 1))  # fmt: skip
    jobs = {job.row.idx: job for job in render_jobs(store, plan, load(store, plan))}
    assert jobs[row].prompt == preview.text and jobs[row].token_count == cli_tokens

    app = make_app(store, engine=engine)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await show_screen(app, pilot, "3", "Playground")
            screen = app.screen
            screen.query_one("#pg-version").value = "fs@1"  # type: ignore[attr-defined]
            screen.query_one("#pg-dataset").value = "reviews/train"  # type: ignore[attr-defined]
            await settle(app, pilot)
            screen.query_one("#pg-row").value = str(row)  # type: ignore[attr-defined]
            await pilot.press("ctrl+l")
            await settle(app, pilot)
            await wait_for_text(app, pilot, f"{cli_tokens} / {preview.context_window} tokens")
            assert "review number 2" in screen_text(app)
    finally:
        store.close()
