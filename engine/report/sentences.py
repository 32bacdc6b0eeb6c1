"""The decision report's plain sentences, each derived only from the report's own numbers.

A sentence appears only when its numbers exist; otherwise one sentence says what is missing
and the command that would produce it. `docs/report.md` states every rule; the tests check
each sentence against the numbers it reads (the sign of a delta against "better", the
significance against "sure", the break-even direction, the crossover size).
"""

from __future__ import annotations

from tunelab.engine.compare.cost import BreakEven, RunCost
from tunelab.engine.compare.records import MetricComparison, RunSummary
from tunelab.engine.compare.report import fmt_money, fmt_p
from tunelab.engine.compare.series import higher_is_better
from tunelab.engine.curves.crossover import fallbacks
from tunelab.engine.curves.records import CurvePoint, CurveSummary
from tunelab.engine.report.records import DecisionReport, ReportSentence
from tunelab.engine.robustness.contrast import drop_verb, matched_perturbations
from tunelab.engine.robustness.records import PerturbationResult

CURVE_SIZES = "50,100,200,400,all"
"""The sizes a suggested `tunelab curve` command tries."""
PERTURBATIONS = "typos,case"
"""The perturbations a suggested `tunelab robustness` command runs."""


def value(x: float) -> str:
    """A metric value as every sentence prints it."""
    return f"{x:.3f}"


def signed(x: float) -> str:
    return f"{x:+.3f}"


def interval(ci: tuple[float, float] | None) -> str:
    return "no interval" if ci is None else f"CI {ci[0]:+.3f} to {ci[1]:+.3f}"


def span(ci: tuple[float, float] | None) -> str:
    """An interval of metric values (not of a difference)."""
    return "-" if ci is None else f"{ci[0]:.3f} to {ci[1]:.3f}"


def about(n: float) -> str:
    """A request count rounded to two significant figures, with thousands separators."""
    if n < 100:
        return f"{round(n):,}"
    digits = len(str(int(n))) - 2
    return f"{round(n, -digits):,.0f}"


def level(confidence: float) -> str:
    return f"{confidence * 100:.3g}%"


def _said(topic: str, text: str) -> ReportSentence:
    return ReportSentence(topic, text)


def _missing(topic: str, text: str, command: str | None = None) -> ReportSentence:
    full = text if command is None else f"{text}: run `{command}`."
    return ReportSentence(topic, full, missing=True, command=command)


def verdict_sentence(report: DecisionReport) -> ReportSentence:
    """Which side is better on the headline metric, and how sure (the paired test's answer)."""
    prompt, tuned = report.prompt_run, report.finetune_run
    m = report.headline
    if m is None:
        why = "; ".join(report.comparison.notes) or "no metric both runs scored row by row"
        return _missing(
            "verdict",
            f"No metric could be compared between run {prompt.id} and run {tuned.id} ({why})",
            f"tunelab compare {prompt.id} {tuned.id}",
        )
    d = m.deltas[0]
    numbers = (
        f"{m.name} {value(m.values[1])} for the fine-tune (run {tuned.id}) against "
        f"{value(m.values[0])} for the prompt (run {prompt.id}), a difference of "
        f"{signed(d.delta)} ({level(d.confidence)} {interval(d.ci)}, {d.test} "
        f"p={fmt_p(d.p_value)}, {d.rows:,} paired rows)"
    )
    if not d.significant:
        return _said(
            "verdict",
            f"Not sure which is better: {numbers}; the interval includes 0, so the difference "
            "could be chance.",
        )
    winner = "fine-tune" if _gain(m, d.delta) > 0 else "prompt"
    return _said(
        "verdict",
        f"The {winner} is better, and sure at the {level(d.confidence)} level: {numbers}; "
        "the interval excludes 0.",
    )


def _gain(m: MetricComparison, delta: float) -> float:
    """Fine-tune minus prompt, oriented so that positive means the fine-tune is better."""
    return delta if m.higher_is_better else -delta


def effort_sentence(report: DecisionReport) -> ReportSentence:
    return _said(
        "effort",
        f"The prompt side is {report.prompt_effort.text()} "
        f"({report.prompt_run.description}); the fine-tune side is "
        f"{report.finetune_effort.text()} ({report.finetune_run.description}). Chosen: "
        f"{report.selection}.",
    )


def drawn_points(curve: CurveSummary) -> list[CurvePoint]:
    """The curve's points with at least one finished repeat, by size."""
    return [p for p in curve.points if p.repeats_done > 0 and p.metric_mean is not None]


def curve_command(report: DecisionReport) -> str:
    return (
        f"tunelab curve --base {report.base_model} --dataset {report.dataset} --prompt "
        f"{report.finetune_run.prompt_ref} --sizes {CURVE_SIZES} --against {report.prompt_run.id}"
    )


def curve_sentence(report: DecisionReport) -> ReportSentence:
    """Where the data curve crosses the prompt, or that none of its sizes beat it."""
    curve = report.curve
    if curve is None:
        return _missing(
            "curve",
            f"No data-efficiency curve for {report.dataset} on {report.base_model}, so how "
            "many labelled examples the fine-tune needs is unknown",
            curve_command(report),
        )
    points = drawn_points(curve)
    notes = [] if curve.state == "finished" else [f"the curve is {curve.state}"]
    if curve.eval_split != report.split:
        notes.append(f"evaluated on {curve.eval_split}, not {report.split}")
    state = "".join(f"; {n}" for n in notes)
    if not points:
        return _missing(
            "curve",
            f"Curve {curve.curve_id} has no finished point yet{state}; follow its jobs",
            "tunelab jobs list",
        )
    sizes = ", ".join(f"{p.size:,}" for p in points)
    band = "no prompt band" if curve.prompt_metric is None else value(curve.prompt_metric)
    against = f"the prompt run {curve.prompt_run_id} ({curve.metric} {band})"
    crossing = next((p for p in points if p.size == curve.crossover_size), None)
    if crossing is not None and crossing.metric_mean is not None:
        delta = "" if crossing.delta_vs_prompt is None else f", {signed(crossing.delta_vs_prompt)}"
        return _said(
            "curve",
            f"The data curve crosses the prompt at {crossing.size:,} labelled examples: "
            f"the smallest size tried ({sizes}{state}) at which the fine-tune "
            f"({value(crossing.metric_mean)}{delta}, p={fmt_p(crossing.p_value)}) is "
            f"significantly better than {against}{_fell_back(curve)}.",
        )
    sign = 1.0 if higher_is_better(curve.metric) else -1.0
    best = max(points, key=lambda p: sign * (p.metric_mean or 0.0))
    assert best.metric_mean is not None
    return _said(
        "curve",
        f"None of the sizes tried ({sizes}{state}) beat the prompt significantly: the best, "
        f"{best.size:,} labelled examples, scores {value(best.metric_mean)} against {against}.",
    )


def _fell_back(curve: CurveSummary) -> str:
    """Larger sizes that are not significantly better again (`curves.crossover.fallbacks`):
    said, so one lucky point never reads as a trend."""
    back = fallbacks(curve.points, curve.crossover_size)
    if not back:
        return ""
    return f"; but not significantly better again at {', '.join(f'{s:,}' for s in back)}"


def curve_notes(report: DecisionReport) -> list[ReportSentence]:
    """What the curve itself says about its state (failed points, a driver that is gone)."""
    curve = report.curve
    if curve is None:
        return []
    return [_said("curve", f"Curve {curve.curve_id}: {note}") for note in curve.notes]


def robustness_command(run: RunSummary) -> str:
    return f"tunelab robustness {run.id} --perturb {PERTURBATIONS}"


def _change(result: PerturbationResult) -> str:
    change = f"{drop_verb(result)} {value(abs(result.drop))}"
    return f"{change} ({interval(result.ci)}, {result.rows:,} rows)"


def robustness_sentences(report: DecisionReport) -> list[ReportSentence]:
    """Each perturbation's drop, both sides side by side where both were tested."""
    sides = (
        ("prompt", report.prompt_robustness, report.prompt_run),
        ("fine-tune", report.finetune_robustness, report.finetune_run),
    )
    out = [
        _missing(
            "robustness",
            f"No robustness suite for the {name} run {run.id}, so how it holds up under "
            "sloppy input is unknown",
            robustness_command(run),
        )
        for name, suite, run in sides
        if suite is None
    ]
    for name, p, f in matched_perturbations(report.prompt_robustness, report.finetune_robustness):
        if p is not None and f is not None:
            if f.drop == p.drop:
                tail = "both drop the same."
            else:
                tail = f"the {'fine-tune' if f.drop < p.drop else 'prompt'} drops less."
            text = f"Under {name}, the fine-tune {_change(f)} and the prompt {_change(p)}: {tail}"
        else:
            one, side = (p, "prompt") if p is not None else (f, "fine-tune")
            assert one is not None
            text = f"Under {name}, only the {side} was tested: it {_change(one)}."
        out.append(_said("robustness", text))
    return out


def _eval_command(run: RunSummary) -> str:
    return (
        f"tunelab eval --prompt {run.prompt_ref} --model {run.model_name} --dataset "
        f"{run.dataset_name} --split {run.split} --latency-probe 20"
    )


def speed_sentences(report: DecisionReport) -> list[ReportSentence]:
    """Latency per request (the probe) and cost per 1k requests (throughput), side by side."""
    prompt_cost, tuned_cost = report.comparison.costs[0], report.comparison.costs[1]
    runs = (report.prompt_run, report.finetune_run)
    out: list[ReportSentence] = []
    p_ms, f_ms = prompt_cost.latency_p50_ms, tuned_cost.latency_p50_ms
    if p_ms is None or f_ms is None:
        out += [
            _missing(
                "speed", f"Per-request latency is missing for run {run.id}", _eval_command(run)
            )
            for run, ms in zip(runs, (p_ms, f_ms), strict=True)
            if ms is None
        ]
    else:
        faster = "same speed" if f_ms == p_ms else ("fine-tune" if f_ms < p_ms else "prompt")
        tail = "both answer as fast." if faster == "same speed" else f"the {faster} is faster."
        out.append(
            _said(
                "speed",
                f"Latency per request (median, latency probe at batch size 1): the fine-tune "
                f"{f_ms:,.0f} ms, the prompt {p_ms:,.0f} ms; {tail}",
            )
        )
    p_cost, f_cost = prompt_cost.cost_per_1k_requests, tuned_cost.cost_per_1k_requests
    if p_cost is None or f_cost is None:
        out += [
            _missing("speed", f"No timed requests to price for run {run.id}", _eval_command(run))
            for run, cost in zip(runs, (p_cost, f_cost), strict=True)
            if cost is None
        ]
    else:
        cheaper = "neither" if f_cost == p_cost else ("fine-tune" if f_cost < p_cost else "prompt")
        tail = "the same." if cheaper == "neither" else f"the {cheaper} is cheaper to serve."
        out.append(
            _said(
                "speed",
                f"Serving 1,000 requests costs {fmt_money(f_cost)} with the fine-tune and "
                f"{fmt_money(p_cost)} with the prompt; {tail}",
            )
        )
    return out


def training_sentences(report: DecisionReport) -> list[ReportSentence]:
    """What training cost and the request volume that repays it (`compare.cost.break_even`)."""
    tuned: RunCost = report.comparison.costs[1]
    even: BreakEven = report.comparison.break_even[0]
    out: list[ReportSentence] = []
    if tuned.training_seconds is None:
        out.append(
            _missing(
                "training",
                f"The fine-tune's training time is unknown ({tuned.training_note}); train through "
                "`tunelab tune` so the job and its time are recorded",
            )
        )
    else:
        out.append(
            _said(
                "training",
                f"Training the fine-tune cost {fmt_money(tuned.training_cost)} "
                f"({tuned.training_note}).",
            )
        )
    out.append(break_even_sentence(even))
    return out


def break_even_sentence(even: BreakEven) -> ReportSentence:
    if even.requests is None and even.saving_per_request is None:
        if even.verdict.startswith("no break-even"):
            return _said(
                "training",
                "There is no break-even volume: the fine-tune is significantly worse on the "
                "headline metric, so it replaces the prompt at no volume.",
            )
        return _missing("training", "The break-even volume is unknown: no timed requests to price")
    if even.requests is None:
        return _said(
            "training",
            "The fine-tune is not cheaper per request, so its training cost is never repaid: "
            "at any volume the prompt is cheaper overall.",
        )
    if even.requests == 0:
        return _said(
            "training",
            "The fine-tune is never dearer: it adds no training cost over the prompt and costs "
            "no more per request.",
        )
    if even.extra_training_cost > 0:
        saving = fmt_money((even.saving_per_request or 0.0) * 1000)
        return _said(
            "training",
            f"The fine-tune's training cost is repaid after about {about(even.requests)} "
            f"requests (it saves {saving} per 1,000); below that the prompt is cheaper "
            "overall, above it the fine-tune is.",
        )
    return _said(
        "training",
        f"The prompt side's extra training cost is repaid after about {about(even.requests)} "
        "requests; below that the fine-tune is cheaper overall, above it the prompt is.",
    )


def change_sentences(report: DecisionReport) -> list[ReportSentence]:
    """What would change the verdict: more rows, the request volume, the data, the inputs."""
    out: list[ReportSentence] = []
    m = report.headline
    if m is not None:
        d = m.deltas[0]
        if not d.significant and d.rows_needed is not None and d.rows_needed > d.rows:
            out.append(
                _said(
                    "change",
                    f"With about {d.rows_needed:,} evaluation rows instead of {d.rows:,}, a "
                    "difference this size would likely show (80% power).",
                )
            )
    even = report.comparison.break_even[0]
    if even.requests is not None and even.requests > 0 and even.extra_training_cost > 0:
        out.append(
            _said(
                "change",
                f"Below about {about(even.requests)} requests in total the prompt is cheaper, "
                "training included; above that the fine-tune is.",
            )
        )
    if m is not None:
        out += _trade_off(report, m)
    if report.curve is not None:
        out += _curve_change(report.curve)
    if m is not None:
        out += _flips(report, m.higher_is_better)
    return out


def _trade_off(report: DecisionReport, m: MetricComparison) -> list[ReportSentence]:
    """The significantly better side is the dearer one to serve: what the gain costs."""
    d = m.deltas[0]
    prompt, tuned = (c.cost_per_1k_requests for c in report.comparison.costs[:2])
    if not d.significant or prompt is None or tuned is None or prompt == tuned:
        return []
    winner = "fine-tune" if _gain(m, d.delta) > 0 else "prompt"
    dearer = "fine-tune" if tuned > prompt else "prompt"
    if winner != dearer:
        return []
    other = "prompt" if winner == "fine-tune" else "fine-tune"
    return [
        _said(
            "change",
            f"Cost against quality: the {winner} is better by {value(abs(d.delta))} {m.name} "
            f"but costs {fmt_money(abs(tuned - prompt))} more per 1,000 requests; where that "
            f"matters more, the {other} wins.",
        )
    ]


def _curve_change(curve: CurveSummary) -> list[ReportSentence]:
    points = drawn_points(curve)
    if not points:
        return []
    if curve.crossover_size is None:
        return [
            _said(
                "change",
                f"More labelled data than the {points[-1].size:,} examples tried"
                f"{' so far (the curve is still running)' if curve.state == 'running' else ''} "
                "might: no size tried beat the prompt significantly.",
            )
        ]
    smaller = [p.size for p in points if p.size < curve.crossover_size]
    if not smaller:
        return [
            _said(
                "change",
                f"Even the smallest size tried, {curve.crossover_size:,} labelled examples, "
                "beats the prompt; fewer were not tried.",
            )
        ]
    tried = ", ".join(f"{s:,}" for s in smaller)
    return [
        _said(
            "change",
            f"With fewer than {curve.crossover_size:,} labelled examples the prompt is as good: "
            f"no smaller size tried ({tried}) beat it significantly.",
        )
    ]


def _flips(report: DecisionReport, higher_is_better: bool) -> list[ReportSentence]:
    """Perturbations under which the two sides swap places (on their own suites' rows)."""
    sign = 1.0 if higher_is_better else -1.0
    out = []
    for name, p, f in matched_perturbations(report.prompt_robustness, report.finetune_robustness):
        if p is None or f is None:
            continue
        clean = sign * (f.clean_metric - p.clean_metric)
        perturbed = sign * (f.perturbed_metric - p.perturbed_metric)
        if clean * perturbed >= 0:
            continue
        ahead, behind = ("fine-tune", "prompt") if perturbed > 0 else ("prompt", "fine-tune")
        a, b = (f, p) if perturbed > 0 else (p, f)
        out.append(
            _said(
                "change",
                f"Under {name} the {ahead} scores better than the {behind} "
                f"({value(a.perturbed_metric)} against {value(b.perturbed_metric)}), the other "
                "way round from clean input: on inputs like that the ranking flips.",
            )
        )
    return out


def decision_sentences(report: DecisionReport) -> tuple[ReportSentence, ...]:
    """Every sentence of the report, in `TOPICS` order."""
    return (
        verdict_sentence(report),
        effort_sentence(report),
        curve_sentence(report),
        *curve_notes(report),
        *robustness_sentences(report),
        *speed_sentences(report),
        *training_sentences(report),
        *change_sentences(report),
    )
