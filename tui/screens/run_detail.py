"""A run's detail view (Enter on an output, `i` on the run list): its metrics with what each
speed figure measures, the latency probe, cached rows, and one row at a time in full (input,
output, extracted answer, reference, scores, rating, judge); n and p page through the rows."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.binding import Binding

from tunelab.tui.data import format_metric, main_metric
from tunelab.tui.screens.detail import DetailModal, section
from tunelab.tui.widgets.outputs_table import judge_cell, stars

if TYPE_CHECKING:
    from tunelab.engine.api.types import RunDetail
    from tunelab.store.records import RunOutput


def _number(value: float | int | str) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def run_sections(detail: RunDetail) -> list[Text]:
    """The run's own sections (the row's come from `row_section`)."""
    run = detail.run
    head = (
        f"{run.prompt_ref} · {run.model_name} · {run.dataset_name}/{run.split} · {run.status}\n"
        f"{run.rows_done}/{run.rows_total} rows · main metric {format_metric(main_metric(run))}"
    )
    if detail.cached_rows:
        head += (
            f"\n{detail.cached_rows} rows answered from the response cache "
            "(shared with an earlier run's outputs)"
        )
    if run.samples > 1:
        head += f"\n{run.samples} samples per row (vote_ metrics: their majority vote)"
    if run.error:
        head += f"\nerror: {run.error}"
    metrics = "\n".join(
        f"{m.name} {_number(m.value)}" + (f"  ({m.note})" if m.note else "")
        for m in detail.metrics
        if not m.name.startswith("probe_")
    )
    probe_figures = [m for m in detail.metrics if m.name.startswith("probe_")]
    probe = "\n".join(f"{m.name} {_number(m.value)}  ({m.note})" for m in probe_figures)
    if detail.probe:
        rows = ", ".join(str(r.row_idx) for r in detail.probe)
        probe += f"\n{len(detail.probe)} requests timed one at a time (rows {rows})"
    return [
        section(f"Run {run.id}", head),
        section("Metrics", metrics, "— (no rows scored)"),
        section("Latency probe (batch size 1)", probe.strip(), "none taken"),
    ]


def row_section(detail: RunDetail, output: RunOutput, position: int) -> list[Text]:
    """One row in full: what went in, what came out, what was extracted and how it scored."""
    if output.answer_found is None:
        answer = output.prediction or "—"
    elif output.answer_found:
        answer = f"{output.prediction} (reference answer {output.reference_answer or '—'})"
    else:
        answer = f"(not found) (reference answer {output.reference_answer or '—'})"
    scores = " · ".join(f"{k} {_number(v)}" for k, v in output.scores.items()
                        if isinstance(v, int | float | str))  # fmt: skip
    judged = detail.judgements.get(output.id)
    judge = "—" if judged is None else f"{judge_cell(judged)} · {judged.rationale or '—'}"
    facts = (
        f"reference {output.reference or '—'}\nextracted answer {answer}\n"
        f"scores {scores or '—'}\nrating {stars(output.rating)}\njudge {judge}\n"
        f"{output.tokens_in} tokens in · {output.tokens_out} out · {output.latency_ms:.0f} ms"
        + (" · cached" if output.cached else "")
    )
    title = f"Row {output.row_idx} ({position + 1} of {len(detail.outputs)}; n next, p previous)"
    return [
        section(title, facts),
        section("Input (the rendered prompt)", output.rendered_prompt),
        section("Output", output.output, "(empty)"),
    ]


class RunDetailModal(DetailModal):
    """One run in full, a row at a time."""

    BINDINGS = [
        Binding("n", "next_row", "Next row", id="run-detail-next", tooltip="Show the next row"),
        Binding("p", "previous_row", "Previous row", id="run-detail-previous",
                tooltip="Show the previous row"),
    ]  # fmt: skip

    def __init__(self, detail: RunDetail, output_id: int | None = None) -> None:
        super().__init__()
        self.detail = detail
        ids = [o.id for o in detail.outputs]
        self.position = ids.index(output_id) if output_id in ids else 0

    def page_title(self) -> str:
        run = self.detail.run
        return f"Run {run.id} · {run.prompt_ref} on {run.model_name}"

    def page_sections(self) -> list[Text]:
        out = run_sections(self.detail)
        if self.detail.outputs:
            out += row_section(self.detail, self.detail.outputs[self.position], self.position)
        else:
            out.append(section("Rows", "", "no rows yet"))
        return out

    def action_next_row(self) -> None:
        self._move(1)

    def action_previous_row(self) -> None:
        self._move(-1)

    def _move(self, step: int) -> None:
        count = len(self.detail.outputs)
        if count:
            self.position = (self.position + step) % count
            self.redraw()
