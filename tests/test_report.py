"""The decision report: its sentences agree with its own numbers, its renderers show the
same tables (Markdown) and stay self-contained (HTML), its runs are chosen as documented,
bad input exits 2 in one line, and a real workspace reports end to end."""

from __future__ import annotations

import base64
import html
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import compare_helpers as ch
from tests import report_helpers as rh
from tests.conftest import run_cli, shared_dataset
from tunelab.engine.compare.cost import break_even, significantly_worse
from tunelab.engine.errors import BadInputError
from tunelab.engine.report.html import html_table, render_html
from tunelab.engine.report.markdown import render_markdown
from tunelab.engine.report.output import report_format, report_to_dict, write_report
from tunelab.engine.report.records import TOPICS, DecisionReport, ReportSentence
from tunelab.engine.report.selection import choose_runs
from tunelab.engine.report.sentences import about, signed
from tunelab.engine.report.tables import tables_by_topic
from tunelab.store import Store, Workspace

# Synthetic reports ---------------------------------------------------------------------


@st.composite
def verdicts(draw: st.DrawFn) -> tuple[float, float, tuple[float, float], bool]:
    """(prompt value, fine-tune value, interval, significant), the interval agreeing with the
    test as compare's do: it excludes 0 exactly when the difference is significant."""
    prompt = draw(st.floats(0.0, 1.0))
    tuned = draw(st.floats(0.0, 1.0))
    delta = tuned - prompt
    significant = draw(st.booleans()) and abs(delta) > 1e-6
    half = draw(st.floats(0.001, 0.5))
    # A significant difference keeps 0 outside its interval; any other keeps it inside.
    half = min(half, abs(delta) * 0.99) if significant else max(half, abs(delta) * 1.01 + 1e-6)
    return prompt, tuned, (delta - half, delta + half), significant


@st.composite
def curves(draw: st.DrawFn) -> rh.CurveSummary | None:
    if not draw(st.booleans()):
        return None
    sizes = draw(st.lists(st.sampled_from([25, 50, 100, 200, 400, 800]), min_size=1, unique=True))
    points = [
        rh.curve_point(size, draw(st.floats(0.0, 1.0)), draw(st.booleans()), delta=0.1)
        for size in sorted(sizes)
    ]
    made = rh.curve(points, state=draw(st.sampled_from(["finished", "running"])))
    notes = draw(st.lists(st.sampled_from(["its driver is gone: run `tunelab curve resume 1`"])))
    return replace(made, notes=tuple(notes))


@st.composite
def suites(draw: st.DrawFn, run_id: int) -> rh.RobustnessSummary | None:
    if not draw(st.booleans()):
        return None
    names = draw(st.lists(st.sampled_from(["typos", "case", "emoji"]), unique=True))
    clean = draw(st.floats(0.0, 1.0))
    return rh.suite(
        run_id, [rh.perturbation(n, clean, draw(st.floats(0.0, 1.0)), run_id=run_id) for n in names]
    )


@st.composite
def reports(draw: st.DrawFn) -> DecisionReport:
    prompt, tuned, ci, significant = draw(verdicts())
    money = st.one_of(st.none(), st.floats(0.0, 5.0))
    prompt_cost = rh.run_cost(1, latency_ms=draw(st.one_of(st.none(), st.floats(1, 500))),
                              per_1k=draw(money))  # fmt: skip
    seconds = draw(st.one_of(st.none(), st.floats(1, 10_000)))
    tuned_cost = rh.run_cost(
        2, latency_ms=draw(st.one_of(st.none(), st.floats(1, 500))), per_1k=draw(money),
        training_seconds=seconds, training_cost=0.0 if seconds is None else seconds / 3600 * 2,
    )  # fmt: skip
    worse = significantly_worse("accuracy", True, tuned - prompt, significant, 2)
    rows = draw(st.integers(10, 5000))
    c = rh.comparison(
        prompt_value=prompt, tuned_value=tuned, ci=ci, significant=significant, rows=rows,
        rows_needed=draw(st.one_of(st.none(), st.integers(2, 100_000))),
        p_value=0.01 if significant else 0.5, prompt_cost=prompt_cost, tuned_cost=tuned_cost,
        break_even=break_even(prompt_cost, tuned_cost, worse),
    )  # fmt: skip
    return rh.report(
        c, curve_summary=draw(curves()), prompt_suite=draw(suites(1)), tuned_suite=draw(suites(2))
    )


def _one(report: DecisionReport, topic: str, pattern: str) -> ReportSentence | None:
    found = [s for s in report.about(topic) if re.search(pattern, s.text)]
    assert len(found) <= 1, found
    return found[0] if found else None


def _check_verdict(report: DecisionReport) -> None:
    m = report.headline
    assert m is not None
    d = m.deltas[0]
    (text,) = [s.text for s in report.about("verdict")]
    assert signed(d.delta) in text
    if d.significant:
        winner = "fine-tune" if d.delta > 0 else "prompt"
        assert text.startswith(f"The {winner} is better, and sure"), text
        assert "excludes 0" in text
    else:
        assert text.startswith("Not sure which is better"), text
        assert "includes 0" in text and " is better," not in text


def _check_break_even(report: DecisionReport) -> None:
    even = report.comparison.break_even[0]
    texts = [s.text for s in report.about("training")]
    volume = _one(report, "change", r"^Below about")
    if even.requests is not None and even.requests > 0 and even.extra_training_cost > 0:
        repaid = next(t for t in texts if "is repaid after about" in t)
        assert "below that the prompt is cheaper" in repaid
        said = re.search(r"about ([\d,]+) requests", repaid)
        assert said is not None
        number = float(said.group(1).replace(",", ""))
        assert number == pytest.approx(even.requests, rel=0.05, abs=0.5)
        assert volume is not None and about(even.requests) in volume.text
    else:
        assert volume is None
    if even.requests is None and even.saving_per_request is not None:
        assert any("never repaid" in t and "the prompt is cheaper" in t for t in texts)
    if even.verdict.startswith("no break-even"):
        assert any(t.startswith("There is no break-even volume") for t in texts)


def _check_curve(report: DecisionReport) -> None:
    curve = report.curve
    said = report.about("curve")[0]
    if curve is None:
        assert said.missing and said.command is not None
        assert said.command.startswith("tunelab curve ")
        return
    notes = [s.text for s in report.about("curve")[1:]]
    assert notes == [f"Curve {curve.curve_id}: {note}" for note in curve.notes]
    fewer = _one(report, "change", r"^With fewer than")
    if curve.crossover_size is None:
        assert said.text.startswith("None of the sizes tried")
        assert fewer is None
        return
    assert f"crosses the prompt at {curve.crossover_size:,} labelled" in said.text
    later = [
        p.size for p in curve.points if p.size > curve.crossover_size and not p.significantly_better
    ]
    assert ("not significantly better again" in said.text) == bool(later)
    smaller = [p.size for p in curve.points if p.size < curve.crossover_size]
    assert (fewer is not None) == bool(smaller)
    if fewer is not None:
        assert fewer.text.startswith(f"With fewer than {curve.crossover_size:,} ")


def _check_robustness(report: DecisionReport) -> None:
    prompt = {r.perturbation: r for r in (report.prompt_robustness or rh.suite(1, [])).results}
    tuned = {r.perturbation: r for r in (report.finetune_robustness or rh.suite(2, [])).results}
    missing = [s for s in report.about("robustness") if s.missing]
    expected_missing = [report.prompt_robustness, report.finetune_robustness].count(None)
    assert len(missing) == expected_missing
    assert all(s.command and s.command.startswith("tunelab robustness ") for s in missing)
    for name in prompt.keys() & tuned.keys():
        said = _one(report, "robustness", f"^Under {name},")
        assert said is not None
        p, f = prompt[name], tuned[name]
        if f.drop < p.drop:
            assert said.text.endswith("the fine-tune drops less.")
        elif f.drop > p.drop:
            assert said.text.endswith("the prompt drops less.")
        flip = _one(report, "change", f"^Under {name} the ")
        clean, perturbed = f.clean_metric - p.clean_metric, f.perturbed_metric - p.perturbed_metric
        assert (flip is not None) == (clean * perturbed < 0)


def _check_trade_off(report: DecisionReport) -> None:
    m = report.headline
    assert m is not None
    d = m.deltas[0]
    p, f = (c.cost_per_1k_requests for c in report.comparison.costs)
    said = _one(report, "change", r"^Cost against quality")
    dearer_wins = (
        d.significant and p is not None and f is not None and p != f and (f > p) == (d.delta > 0)
    )
    assert (said is not None) == dearer_wins
    if said is not None:
        winner = "fine-tune" if d.delta > 0 else "prompt"
        assert said.text.startswith(f"Cost against quality: the {winner} is better")


def _check_speed(report: DecisionReport) -> None:
    p, f = report.comparison.costs
    latency = _one(report, "speed", r"^Latency per request")
    if p.latency_p50_ms is None or f.latency_p50_ms is None:
        assert latency is None
        missing = [s for s in report.about("speed") if s.text.startswith("Per-request latency")]
        expected = [run.id for run, cost in zip(report.comparison.runs, (p, f), strict=True)
                    if cost.latency_p50_ms is None]  # fmt: skip
        assert [s.text.split(": run")[0].rsplit(" ", 1)[-1] for s in missing] == [
            str(i) for i in expected
        ]
    else:
        assert latency is not None
        if f.latency_p50_ms < p.latency_p50_ms:
            assert latency.text.endswith("the fine-tune is faster.")
        elif f.latency_p50_ms > p.latency_p50_ms:
            assert latency.text.endswith("the prompt is faster.")


@settings(max_examples=150, deadline=None)
@given(reports())
def test_every_sentence_agrees_with_the_reports_numbers(report: DecisionReport) -> None:
    _check_verdict(report)
    _check_break_even(report)
    _check_curve(report)
    _check_robustness(report)
    _check_speed(report)
    _check_trade_off(report)
    assert {s.topic for s in report.sentences} <= set(TOPICS)
    for s in report.sentences:
        assert s.text.strip() and not re.search(r"\bNone\b(?! of the sizes)|\bnan\b", s.text)
        if s.command is not None:
            assert s.missing and f"`{s.command}`" in s.text


def test_a_prompt_that_wins_under_typos_flips_the_ranking() -> None:
    report = rh.report(
        prompt_suite=rh.suite(1, [rh.perturbation("typos", 0.40, 0.38)]),
        tuned_suite=rh.suite(2, [rh.perturbation("typos", 0.55, 0.30)]),
    )
    (flip,) = report.about("change")[-1:]
    assert flip.text.startswith("Under typos the prompt scores better than the fine-tune")
    assert "(0.380 against 0.300)" in flip.text


def test_about_rounds_to_two_significant_figures() -> None:
    assert about(1234.0) == "1,200"
    assert about(98.6) == "99"
    assert about(1_250_000.0) == "1,200,000"


# Renderers -----------------------------------------------------------------------------


def _full_report() -> DecisionReport:
    points = [rh.curve_point(50, 0.38, False), rh.curve_point(100, 0.52, True, delta=0.12)]
    return rh.report(
        curve_summary=rh.curve(points),
        prompt_suite=rh.suite(1, [rh.perturbation("typos", 0.40, 0.29)]),
        tuned_suite=rh.suite(2, [rh.perturbation("typos", 0.55, 0.51)]),
    )


def test_markdown_shows_every_table_and_every_sentence() -> None:
    report = _full_report()
    text = render_markdown(report)
    for tables in tables_by_topic(report).values():
        for table in tables:
            assert table.title in text
            header = "| " + " | ".join(h or " " for h in table.head) + " |"
            assert header in text
            for row in table.rows:
                assert "| " + " | ".join(row) + " |" in text
    for sentence in report.sentences:
        assert sentence.text in text
    assert "## What would change the verdict" in text


class _Checker(HTMLParser):
    """Balanced tags and every src a data URI."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.sources += [v or "" for k, v in attrs if k in ("src", "href")]
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, (tag, self.open[-3:])
        self.open.pop()


def test_html_is_self_contained_with_inline_plots_and_escaped_strings() -> None:
    report = rh.rename(_full_report(), "<script>alert(1)</script>|x")
    page = render_html(report)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "http" not in page.lower()
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.open == []
    assert len(checker.sources) == 2  # the curve and the robustness plot
    for source in checker.sources:
        assert source.startswith("data:image/svg+xml;base64,")
        svg = base64.b64decode(source.split(",", 1)[1]).decode()
        root = ET.fromstring(svg)
        assert root.tag.endswith("svg")
    for tables in tables_by_topic(report).values():
        for table in tables:  # the Markdown's tables, cell for cell
            assert html_table(table) in page
            assert all(html.escape(cell) in page for row in table.rows for cell in row)
    for sentence in report.sentences:
        if sentence.command is None:
            assert html.escape(sentence.text) in page
        else:
            assert f"<code>{html.escape(sentence.command)}</code>" in page


def test_a_report_file_is_chosen_by_its_suffix(tmp_path: Path) -> None:
    report = rh.report()
    assert write_report(report, tmp_path / "r.md").read_text().startswith("# Prompt or fine-tune?")
    assert write_report(report, tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    with pytest.raises(BadInputError, match=r"ends in \.md or \.html"):
        report_format(tmp_path / "r.pdf")
    with pytest.raises(BadInputError, match="does not exist"):
        report_format(tmp_path / "nowhere" / "r.md")
    data = json.loads(json.dumps(report_to_dict(report)))
    assert data["comparison"]["metrics"]["accuracy"]["delta"] == pytest.approx(0.15)
    assert [s["text"] for s in data["sentences"]] == [s.text for s in report.sentences]


# Choosing the runs ----------------------------------------------------------------------


def _workspace_runs(store: Store) -> dict[str, int]:
    """Two prompt runs and two fine-tuned runs on ds/test, one of each on ds/validation."""
    pv = ch.prompt(store)
    base = ch.base_model(store)
    tuned = ch.finetuned_model(store, base, "ft-a")
    other = ch.finetuned_model(store, base, "ft-b")
    ds = ch.dataset(store, n=10, splits=("test", "validation"))
    runs = {
        "weak_prompt": ch.classification_run(store, pv, base, ds, [1, 0] * 5),
        "strong_prompt": ch.classification_run(store, pv, base, ds, [1, 1, 0, 1, 1] * 2),
        "strong_tuned": ch.classification_run(store, pv, tuned, ds, [1] * 9 + [0]),
        "weak_tuned": ch.classification_run(store, pv, other, ds, [0] * 10),
        "val_prompt": ch.classification_run(store, pv, base, ds, [1] * 10, split="validation"),
    }
    return {k: r.id for k, r in runs.items()}


def test_the_best_prompt_and_fine_tuned_runs_on_a_held_out_split_are_chosen(store: Store) -> None:
    ids = _workspace_runs(store)
    choice = choose_runs(store)
    assert (choice.prompt_run.id, choice.finetune_run.id) == (
        ids["strong_prompt"],
        ids["strong_tuned"],
    )
    assert choice.metric == "accuracy"
    assert choice.selection.startswith("the best of 2 prompt runs and the best of 2 fine-tuned")
    assert (choice.finetune_effort.runs, choice.finetune_effort.models) == (2, 2)
    named = choose_runs(store, prompt_run=ids["weak_prompt"])
    assert (named.prompt_run.id, named.finetune_run.id) == (ids["weak_prompt"], ids["strong_tuned"])
    assert named.selection.startswith("the prompt run named")


def test_runs_on_a_perturbed_copy_are_left_out_unless_its_dataset_is_named(store: Store) -> None:
    from tunelab.engine.robustness.derived import LINEAGE_KIND
    from tunelab.store import NewDataset, NewSplit

    ids = _workspace_runs(store)
    rows = [{"text": f"ROW {i}", "label": ("pos", "neg")[i % 2]} for i in range(10)]
    copy = store.add_exported_dataset(
        NewDataset("ds.case", "robustness", "ds-case", [NewSplit("test", rows, "c")],
                   task="classification", labels=["pos", "neg"]),
        {"kind": LINEAGE_KIND, "source": "ds/test"},
    )  # fmt: skip
    pv, base = ch.prompt(store), ch.base_model(store)
    tuned = store.get_model("ft-a")
    perturbed = [ch.classification_run(store, pv, m, copy, [1] * 10) for m in (base, tuned)]
    choice = choose_runs(store)
    assert choice.prompt_run.id == ids["strong_prompt"]
    named = choose_runs(store, dataset="ds.case")
    assert [named.prompt_run.id, named.finetune_run.id] == [r.id for r in perturbed]


def test_runs_that_cannot_be_weighed_are_refused_in_one_line(store: Store) -> None:
    with pytest.raises(BadInputError, match="no dataset split has both"):
        choose_runs(store)
    ids = _workspace_runs(store)
    cases = [
        ({"prompt_run": ids["val_prompt"], "finetune_run": ids["strong_tuned"]},
         "on ds/validation but run .* is on ds/test"),
        ({"prompt_run": ids["strong_tuned"]}, "--prompt-run names a run on a base model"),
        ({"finetune_run": ids["strong_prompt"]}, "--finetune-run names a run on a fine-tuned"),
        ({"prompt_run": ids["val_prompt"]}, "no finished fine-tuned run on ds/validation"),
    ]  # fmt: skip
    for kwargs, message in cases:
        with pytest.raises(BadInputError, match=message) as raised:
            choose_runs(store, **kwargs)  # type: ignore[arg-type]
        assert "\n" not in str(raised.value)
    pv = ch.prompt(store)
    running = ch.classification_run(
        store, pv, ch.base_model(store), store.get_dataset("ds"), [1, 0], finished=False
    )
    with pytest.raises(BadInputError, match=f"run {running.id} is running"):
        choose_runs(store, prompt_run=running.id)


def test_the_cli_refuses_bad_input_with_exit_2(workspace: Workspace, tmp_path: Path) -> None:
    out = str(tmp_path / "decision.md")
    empty = run_cli("report", out, workspace=workspace)
    assert empty.returncode == 2 and "no dataset split has both" in empty.stderr
    store = workspace.open_store()
    try:
        ids = _workspace_runs(store)
    finally:
        store.close()
    cases = [
        (["report", str(tmp_path / "decision.pdf")], "ends in .md or .html"),
        (["report", out, "--prompt-run", "999"], "999"),
        (["report", out, "--prompt-run", str(ids["val_prompt"]),
          "--finetune-run", str(ids["strong_tuned"])], "same dataset and split"),
    ]  # fmt: skip
    for args, message in cases:
        result = run_cli(*args, workspace=workspace)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not Path(out).exists() and not (tmp_path / "decision.pdf").exists()


# End to end on the real built-in model ----------------------------------------------------

LABELS = ["irony", "non_irony"]
TEMPLATE = "Is this tweet ironic? Reply with one word: irony or non_irony.\n\nTweet: {{ text }}"


def _rows(name: str, n: int) -> list[dict[str, str]]:
    with shared_dataset(name).open(encoding="utf-8") as handle:
        return [json.loads(next(handle)) for _ in range(n)]


@pytest.mark.model
def test_a_real_workspace_reports_prompt_against_fine_tune(
    workspace: Workspace, tmp_path: Path
) -> None:
    from tunelab.engine.evaluation.run import EvalRequest, evaluate
    from tunelab.engine.models.sources import resolve_model
    from tunelab.engine.training.config import TrainingConfig
    from tunelab.engine.training.loop import TrainingRequest, run_training
    from tunelab.store import NewDataset, NewSplit, PromptContent

    store = workspace.open_store()
    try:
        store.add_dataset(NewDataset(
            name="irony", source="tweeteval-irony", fingerprint="report-e2e",
            splits=[NewSplit("train", _rows("tweeteval-irony-train.jsonl", 8), "tr"),
                    NewSplit("test", _rows("tweeteval-irony-test.jsonl", 4), "te")],
            task="classification", input_columns=["text"], reference_column="label",
            labels=LABELS, metrics=["accuracy"],
        ))  # fmt: skip
        store.save_prompt_version(
            "irony", PromptContent(template=TEMPLATE, settings={"max_new_tokens": 3})
        )

        def run_eval(model: str) -> int:
            request = EvalRequest(
                prompt="irony", model=model, dataset="irony", split="test", batch_size=4,
                latency_probe=2,
            )  # fmt: skip
            result = evaluate(store, request)
            assert result.run.status == "succeeded"
            return result.run.id

        prompt_run = run_eval("builtin")
        base = resolve_model(store, "builtin")
        dataset, version = store.get_dataset("irony"), store.get_prompt_version("irony@1")
        config = TrainingConfig(
            method="lora", max_steps=1, batch_size=4, max_seq_len=80, eval_every_steps=0,
            eval_samples=2, device="cpu",
        )  # fmt: skip
        job = store.create_job("lora", {"max_steps": 1}, base.id, dataset.id, version.id)
        store.update_job(job.id, status="running", started_at=datetime.now(UTC).isoformat())
        trained = run_training(
            store,
            TrainingRequest(
                config, base.id, dataset.id, version.id, tmp_path / "job", job_id=job.id
            ),
        )
        store.update_job(job.id, status="succeeded", finished_at=datetime.now(UTC).isoformat())
        tuned_run = run_eval(store.get_model_by_id(trained.model_ids[-1]).name)
    finally:
        store.close()

    out = tmp_path / "decision.html"
    result = run_cli("report", str(out), "--json", workspace=workspace)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["prompt_run_id"], data["finetune_run_id"]) == (prompt_run, tuned_run)
    assert data["comparison"]["rows"] == 4
    costs = data["comparison"]["cost"]
    assert costs[1]["training_seconds"] > 0 and costs[0]["latency_p50_ms"] > 0
    page = out.read_text(encoding="utf-8")
    assert "http" not in page.lower() and page.startswith("<!DOCTYPE html>")
    for sentence in data["sentences"]:
        assert html.escape(sentence["text"].split("`")[0]) in page
    commands = {s["command"] for s in data["sentences"] if s["missing"]}
    assert f"tunelab robustness {prompt_run} --perturb typos,case" in commands
    assert any(c and c.startswith("tunelab curve --base builtin --dataset irony") for c in commands)
    markdown = run_cli(
        "report", str(tmp_path / "decision.md"), "--prompt-run", str(prompt_run),
        workspace=workspace,
    )  # fmt: skip
    assert markdown.returncode == 0, markdown.stderr
    assert "Which is better, and how sure" in markdown.stdout
    assert "| metric | prompt | fine-tune |" in (tmp_path / "decision.md").read_text()
