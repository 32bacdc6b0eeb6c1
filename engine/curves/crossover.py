"""Where a data-efficiency curve crosses the prompt: a pure decision over its points.

The crossover is the smallest training-set size whose fine-tune is significantly better
than the prompt run (the paired test `compare_runs` made on the same rows), or none. A
non-monotone curve keeps its smallest such size; the sentence then says that a larger size
fell back, so a reader never takes one lucky point for a trend.
"""

from __future__ import annotations

from collections.abc import Sequence

from tunelab.engine.curves.records import CurvePoint, CurveSummary


def crossover_size(points: Sequence[CurvePoint]) -> int | None:
    """The smallest size with a finished repeat that beats the prompt run significantly."""
    better = [p.size for p in points if p.repeats_done > 0 and p.significantly_better]
    return min(better) if better else None


def fallbacks(points: Sequence[CurvePoint], crossover: int | None) -> list[int]:
    """Sizes above the crossover that are not significantly better (a non-monotone curve)."""
    if crossover is None:
        return []
    return sorted(
        p.size
        for p in points
        if p.size > crossover and p.repeats_done > 0 and not p.significantly_better
    )


def crossover_sentence(summary: CurveSummary) -> str:
    """The crossover in one sentence, with the numbers behind it."""
    done = [p for p in summary.points if p.repeats_done > 0]
    method = summary.method if summary.method != "lora" else "LoRA"
    prompt = (
        f"the prompt run (run {summary.prompt_run_id})"
        if summary.prompt_run_id is not None
        else "the prompt run"
    )
    if summary.prompt_run_id is None or summary.prompt_metric is None:
        return f"no crossover yet: {prompt} has not been evaluated"
    if not done:
        return f"no crossover yet: no point of the curve has been evaluated against {prompt}"
    pending = summary.state == "running"
    size = crossover_size(summary.points)
    if size is None:
        tried = ", ".join(str(p.size) for p in done)
        text = (
            f"no crossover: {method} is not significantly better than {prompt} on "
            f"{summary.metric} at any size tried ({tried} examples)"
        )
        return text + ("; more points are still running" if pending else "")
    point = next(p for p in summary.points if p.size == size)
    detail = f"{summary.metric} {point.metric_mean:.3f} vs {summary.prompt_metric:.3f}"
    if point.delta_vs_prompt is not None:
        detail += f", {point.delta_vs_prompt:+.3f}"
    if point.p_value is not None:
        detail += f", paired p={_p(point.p_value)}"
    text = f"crossover at {size} examples: {method} beats {prompt} ({detail})"
    below = [p.size for p in done if p.size < size]
    if below:
        text += f"; not at {', '.join(str(s) for s in below)}"
    back = fallbacks(summary.points, size)
    if back:
        text += f"; but not significantly better again at {', '.join(str(s) for s in back)}"
    return text + ("; more points are still running" if pending else "")


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.2g}"
