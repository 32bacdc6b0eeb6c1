"""A job's detail view (Enter on Fine-tune's job list): its inputs, the settings it changed,
validation metrics, checkpoints with the best marked, the whole error and the log's tail."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

from tunelab.engine.training.jobs import job_placement
from tunelab.tui.data import job_summary
from tunelab.tui.screens.detail import DetailModal, section

if TYPE_CHECKING:
    from tunelab.engine.api.types import JobDetail

LOG_LINES = 40
"""The log lines the view shows (`l` on the job list reads the whole log)."""


def _value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def job_sections(detail: JobDetail) -> list[Text]:
    """The view's sections, in reading order."""
    job = detail.job
    inputs = " · ".join(
        f"{what} {name}"
        for what, name in (("base", detail.base_model), ("dataset", detail.dataset),
                           ("prompt", detail.prompt_ref))
        if name
    )  # fmt: skip
    settings = "\n".join(f"{name} = {_value(value)}" for name, value in detail.changed_settings)
    validation = "\n".join(
        f"{point.name} {point.value:.4f} at step {point.step}" for point in detail.validation
    )
    checkpoints = "\n".join(
        f"{'★' if model.is_best else ' '} {model.name} · step {model.step}"
        + "".join(f" · {k} {_value(v)}" for k, v in model.metrics.items())
        for model in detail.checkpoints
    )
    log = "\n".join(detail.log_lines[-LOG_LINES:])
    out = [
        section("Job", f"{job_summary(job)}\n{inputs or 'no inputs recorded'}\n"
                       f"where {job_placement(job)} · log {job.log_path or '—'}"),
    ]  # fmt: skip
    if job.error:
        out.append(section("Error", Text(job.error, style="bold")))
    out += [
        section("Settings changed from the defaults", settings, "defaults"),
        section("Validation metrics (latest)", validation, "none yet"),
        section("Checkpoints (★ best)", checkpoints, "none saved yet"),
    ]
    out.append(section(f"Log (last {LOG_LINES} lines; l on the job list reads it all)", log,
                       "(the log is empty)"))  # fmt: skip
    return out


class JobDetailModal(DetailModal):
    """Everything about one job, wrapped to the terminal's width."""

    def __init__(self, detail: JobDetail) -> None:
        super().__init__(
            f"Job {detail.job.id} · {detail.job.method} · {detail.job.status}",
            job_sections(detail),
        )
        self.detail = detail
