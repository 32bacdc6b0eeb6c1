"""The decision report's plots as standalone SVG text, drawn with matplotlib's SVG backend.

Text is drawn as paths (no fonts to fetch), the figure carries no date, and ids are
seeded, so the same report draws the same bytes. matplotlib is imported inside each
function: importing the engine never pays for it.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from tunelab.engine.curves.records import CurveSummary
from tunelab.engine.report.sentences import drawn_points
from tunelab.engine.robustness.contrast import matched_perturbations
from tunelab.engine.robustness.records import RobustnessSummary

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_SIZE = (6.4, 3.6)


def _svg(figure: Figure) -> str:
    import matplotlib

    out = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "tunelab"}):
        figure.savefig(out, format="svg", bbox_inches="tight", metadata={"Date": None})
    return out.getvalue()


def _figure() -> Figure:
    # Figure, not pyplot: no global state, safe in a worker thread, no GUI backend.
    from matplotlib.figure import Figure

    return Figure(figsize=_SIZE)


def curve_svg(curve: CurveSummary) -> str | None:
    """The metric against training-set size with each point's interval, beside the prompt
    run's band (its metric and interval); None when no point is drawn yet."""
    points = drawn_points(curve)
    if not points:
        return None
    figure = _figure()
    axes = figure.add_subplot()
    sizes = [p.size for p in points]
    means = [p.metric_mean or 0.0 for p in points]
    lows = [m - (p.ci[0] if p.ci else m) for p, m in zip(points, means, strict=True)]
    highs = [(p.ci[1] if p.ci else m) - m for p, m in zip(points, means, strict=True)]
    axes.errorbar(
        sizes, means, yerr=[lows, highs], marker="o", capsize=3, color="#1f6feb", label="fine-tune"
    )
    if curve.prompt_metric is not None:
        axes.axhline(curve.prompt_metric, color="#d1242f", linestyle="--", label="prompt")
        if curve.prompt_ci is not None:
            axes.axhspan(*curve.prompt_ci, color="#d1242f", alpha=0.12, linewidth=0)
    if curve.crossover_size is not None:
        axes.axvline(curve.crossover_size, color="#6e7781", linestyle=":", label="crossover")
    if len(set(sizes)) > 1 and min(sizes) > 0:
        axes.set_xscale("log")
    axes.set_xticks(sizes, [f"{s:,}" for s in sizes])
    axes.minorticks_off()
    axes.set_xlabel("labelled training examples")
    axes.set_ylabel(_plain(curve.metric))
    axes.legend(loc="best", fontsize="small")
    axes.grid(alpha=0.3)
    return _svg(figure)


def robustness_svg(prompt: RobustnessSummary | None, tuned: RobustnessSummary | None) -> str | None:
    """Each perturbation's drop with its interval, the two sides' bars next to each other;
    None when neither side has a suite with results."""
    matched = matched_perturbations(prompt, tuned)
    if not matched:
        return None
    figure = _figure()
    axes = figure.add_subplot()
    width = 0.38
    sides = ((0, "prompt", "#d1242f", -width / 2), (1, "fine-tune", "#1f6feb", width / 2))
    for side, label, colour, offset in sides:
        xs, drops, lows, highs = [], [], [], []
        for i, (_, prompt_result, tuned_result) in enumerate(matched):
            result = tuned_result if side else prompt_result
            if result is None:
                continue
            xs.append(i + offset)
            drops.append(result.drop)
            ci = result.ci or (result.drop, result.drop)
            lows.append(result.drop - ci[0])
            highs.append(ci[1] - result.drop)
        if xs:
            axes.bar(xs, drops, width, yerr=[lows, highs], capsize=3, color=colour, label=label)
    axes.axhline(0, color="#6e7781", linewidth=0.8)
    axes.set_xticks(range(len(matched)), [_plain(name) for name, _, _ in matched])
    axes.set_ylabel("metric drop (clean − perturbed)")
    axes.legend(loc="best", fontsize="small")
    axes.grid(axis="y", alpha=0.3)
    return _svg(figure)


def _plain(text: str) -> str:
    """A label matplotlib draws literally: '$' would start mathtext."""
    return text.replace("$", r"\$")
