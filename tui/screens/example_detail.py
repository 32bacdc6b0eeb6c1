"""A compared row's detail view (Enter on Compare's examples): the row's input, both outputs
with their scores, and the word diff between them, all wrapped."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

from tunelab.tui.screens.detail import DetailModal, section

if TYPE_CHECKING:
    from tunelab.engine.api.types import ExampleDetail


def _scores(scores: dict[str, object]) -> str:
    return " · ".join(
        f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in scores.items()
    )


def example_sections(detail: ExampleDetail, diff_text: Text) -> list[Text]:
    """Input, both sides and the word diff (drawn by Compare's `diff_text`, in the theme)."""
    diff = detail.diff
    inputs = "\n".join(f"{name}: {value}" for name, value in detail.inputs.items())
    first, last = detail.labels
    out = [
        section(
            f"Row {detail.row_idx} · {detail.change}",
            f"one of {detail.shared_rows} rows both runs have · reference {diff.reference or '—'}",
        ),
        section("Input", inputs, "(the row is no longer stored)"),
    ]
    if detail.prompts[0] == detail.prompts[1]:
        out.append(section("Prompt (the same for both)", detail.prompts[0]))
    else:
        out.append(section(f"Prompt of {first}", detail.prompts[0]))
        out.append(section(f"Prompt of {last}", detail.prompts[1]))
    for label, output, prediction, scores in (
        (first, diff.output_a, diff.prediction_a, diff.scores_a),
        (last, diff.output_b, diff.prediction_b, diff.scores_b),
    ):
        facts = f"answer {prediction or '—'} · {_scores(scores) or 'no scores'}\n\n{output}"
        out.append(section(f"Output of {label}", facts))
    legend = Text("[-removed-] {+added+}\n\n", style="italic")
    legend.append_text(diff_text)
    out.append(section("Word diff (first → last)", legend))
    return out


class ExampleDetailModal(DetailModal):
    """One changed row of a comparison, in full."""

    def __init__(self, detail: ExampleDetail, diff_text: Text) -> None:
        super().__init__(
            f"Row {detail.row_idx} · {detail.change} · {detail.labels[0]} → {detail.labels[1]}",
            example_sections(detail, diff_text),
        )
        self.detail = detail
