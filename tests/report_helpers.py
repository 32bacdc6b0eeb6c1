"""Synthetic decision reports: hand-built comparison, curve and robustness records, so the
sentences and renderers are tested on any numbers without a store or a model."""

from __future__ import annotations

from dataclasses import replace

from tunelab.engine.compare.cost import BreakEven, RunCost
from tunelab.engine.compare.records import (
    Comparison,
    ExampleCounts,
    MetricComparison,
    MetricDelta,
    PairComparison,
    RunSummary,
)
from tunelab.engine.compare.search_effort import PromptEffort
from tunelab.engine.curves.records import CurvePoint, CurveSummary
from tunelab.engine.report.build import with_sentences
from tunelab.engine.report.records import DecisionReport, FinetuneEffort
from tunelab.engine.robustness.records import PerturbationResult, RobustnessSummary


def summary(run_id: int, model: str, description: str) -> RunSummary:
    return RunSummary(
        run_id, "emotion@1", model, run_id, "emotion", "test", "succeeded", 200, "generate", {},
        description,
    )  # fmt: skip


def run_cost(
    run_id: int,
    *,
    latency_ms: float | None = 120.0,
    per_1k: float | None = 0.05,
    training_cost: float = 0.0,
    training_seconds: float | None = None,
) -> RunCost:
    return RunCost(
        run_id=run_id, requests_timed=20, latency_p50_ms=latency_ms, latency_p95_ms=latency_ms,
        tokens_in_per_request=40.0, tokens_out_per_request=4.0, tokens_per_second=30.0,
        cost_per_1k_requests=per_1k, training_seconds=training_seconds,
        training_gpu_hours=None if training_seconds is None else training_seconds / 3600,
        training_cost=training_cost,
        training_note="base model: no training" if training_seconds is None else "job 1: 600 s",
        latency_source="probe: 20 requests at batch size 1",
    )  # fmt: skip


def comparison(
    *,
    prompt_value: float = 0.40,
    tuned_value: float = 0.55,
    ci: tuple[float, float] | None = (0.05, 0.25),
    p_value: float = 0.003,
    significant: bool = True,
    rows: int = 200,
    rows_needed: int | None = None,
    metric: str = "accuracy",
    prompt_cost: RunCost | None = None,
    tuned_cost: RunCost | None = None,
    break_even: BreakEven | None = None,
) -> Comparison:
    delta = tuned_value - prompt_value
    d = MetricDelta(
        1, 2, delta, ci, p_value, "mcnemar-exact", significant, rows_needed, "", 0.95, p_value,
        1, rows,
    )  # fmt: skip
    m = MetricComparison(metric, "binary", True, rows, [prompt_value, tuned_value], [d])
    costs = [prompt_cost or run_cost(1), tuned_cost or run_cost(2, training_seconds=600)]
    even = break_even or BreakEven(1, 2, 0.5, 0.00002, 25_000.0, "repaid after 25,000")
    return Comparison(
        [summary(1, "builtin", "emotion@1 on builtin"),
         summary(2, "emotion-ft", "emotion@1 on LoRA job 1, step 8")],
        rows, False, [], [m], [PairComparison(1, 2, ExampleCounts("accuracy", 0, 0, 0, 0), [], [])],
        costs, [even], 0, 2000, 0.95, 2.0, 0.1,
    )  # fmt: skip


def curve_point(
    size: int, mean: float, better: bool, *, delta: float | None = None, p: float | None = 0.01
) -> CurvePoint:
    return CurvePoint(
        size=size, repeats_planned=1, repeats_done=1, metric_mean=mean,
        ci=(mean - 0.05, mean + 0.05), run_ids=(size,), job_ids=(size,), train_seconds=60.0,
        train_cost_usd=0.01, delta_vs_prompt=delta, delta_ci=None, p_value=p,
        significantly_better=better,
    )  # fmt: skip


def curve(
    points: list[CurvePoint], prompt_metric: float | None = 0.40, state: str = "finished"
) -> CurveSummary:
    better = [p.size for p in points if p.significantly_better and p.repeats_done > 0]
    return CurveSummary(
        curve_id=1, dataset="emotion", base_model="builtin", method="lora", metric="accuracy",
        eval_split="test", prompt_ref="emotion@1", prompt_run_id=1, prompt_metric=prompt_metric,
        prompt_ci=None if prompt_metric is None else (prompt_metric - 0.05, prompt_metric + 0.05),
        points=tuple(sorted(points, key=lambda p: p.size)),
        crossover_size=min(better) if better else None, state=state,
    )  # fmt: skip


def perturbation(
    name: str,
    clean: float,
    perturbed: float,
    ci: tuple[float, float] | None = None,
    run_id: int = 9,
) -> PerturbationResult:
    drop = clean - perturbed
    return PerturbationResult(
        name, "input", run_id, "accuracy", clean, perturbed, drop,
        ci if ci is not None else (drop - 0.03, drop + 0.03), 0.02, 50,
    )  # fmt: skip


def suite(clean_run_id: int, results: list[PerturbationResult]) -> RobustnessSummary:
    return RobustnessSummary(clean_run_id, clean_run_id, 0, tuple(results))


def report(
    c: Comparison | None = None,
    *,
    curve_summary: CurveSummary | None = None,
    prompt_suite: RobustnessSummary | None = None,
    tuned_suite: RobustnessSummary | None = None,
) -> DecisionReport:
    made = DecisionReport(
        dataset="emotion", split="test", metric="accuracy",
        selection="the best of 1 prompt run and the best of 1 fine-tuned run, by accuracy",
        comparison=c or comparison(), prompt_effort=PromptEffort(0),
        finetune_effort=FinetuneEffort(1, 1, 1), base_model="builtin", curve=curve_summary,
        prompt_robustness=prompt_suite, finetune_robustness=tuned_suite,
    )  # fmt: skip
    return with_sentences(made)


def rename(r: DecisionReport, dataset: str) -> DecisionReport:
    """The same report on a dataset with another name (for escaping tests)."""
    runs = [
        replace(run, dataset_name=dataset, prompt_ref=dataset + "@1") for run in r.comparison.runs
    ]
    return with_sentences(replace(r, dataset=dataset, comparison=replace(r.comparison, runs=runs)))
