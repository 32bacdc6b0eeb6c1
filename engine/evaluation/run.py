"""Evaluation runs: a prompt version, model, dataset split and settings, scored row by row.

Each chunk of rows is generated (or found in the response cache), scored and written to the
store before the next one starts (rows of about one length together, longest first), so an
interrupted run keeps what it did and `resume_run` finishes only the missing rows. The engine
knows nothing of a UI: progress goes through `on_progress`, cancellation comes through
`should_stop`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from tunelab.engine.errors import BadInputError, EngineError, one_line
from tunelab.engine.evaluation import plan as eval_plan
from tunelab.engine.evaluation.calibrate import applied_calibration, measure_run_prior
from tunelab.engine.evaluation.latency_probe import DEFAULT_PROBE_REQUESTS, probe_stats, run_probe
from tunelab.engine.evaluation.metrics import Example, aggregate_metrics
from tunelab.engine.evaluation.plan import EvalPlan, RowJob
from tunelab.engine.evaluation.request import (
    DEFAULT_BATCH_SIZE,
    EvalProgress,
    EvalRequest,
    EvalResult,
    ProgressCallback,
    StopCheck,
)
from tunelab.engine.evaluation.samples import (
    refuse_identical_samples,
    sampled_plan,
    score_sampled_chunk,
    with_sample_costs,
)
from tunelab.engine.evaluation.self_consistency import vote_metrics
from tunelab.engine.models.endpoint import is_endpoint
from tunelab.store import Run, RunClaimedError, RunOutput, Store


def evaluate(
    store: Store,
    request: EvalRequest,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> EvalResult:
    """Run (or resume) an evaluation, writing outputs and scores as they are produced.

    Everything that can be checked is checked before the run is created: the prompt's
    variables against the dataset's columns, metric names, and every rendered prompt against
    the model's context window.

    Returns:
        the run with its aggregate metrics; `interrupted` is set when `should_stop` fired.
    """
    refuse_identical_samples(store, request)
    plan = sampled_plan(eval_plan.prepare(store, request), request.samples)
    if request.resume_run_id is not None:
        _check_resumable(store.get_run(request.resume_run_id), plan, request.samples)
    loaded = eval_plan.load(store, plan)
    jobs = eval_plan.render_jobs(store, plan, loaded)
    if plan.calibration is not None and plan.calibration.per_run:
        # The prior is the mean over this run's own rows: all are scored before any is written.
        measure_run_prior(store, plan, loaded, jobs, request.batch_size, should_stop)
    if request.resume_run_id is not None:
        run = store.reopen_run(request.resume_run_id)
    else:
        run = create_planned_run(store, plan, request.samples)
    return _execute(store, plan, loaded, run, jobs, request, on_progress, should_stop)


def create_planned_run(store: Store, plan: eval_plan.EvalPlan, samples: int) -> Run:
    """The run row a plan becomes (running, no rows yet), owned by this process."""
    return store.create_run(
        prompt_version_id=plan.version.id,
        model_id=plan.model.id,
        dataset_id=plan.dataset.id,
        split=plan.split,
        rows_total=len(plan.rows),
        settings=plan.settings_dict,
        scoring=plan.scoring,
        metric_names=[m.name for m in plan.metrics],
        row_limit=plan.row_limit,
        sample_seed=plan.sample_seed,
        samples=samples,
    )


def _check_resumable(run: Run, plan: eval_plan.EvalPlan, samples: int) -> None:
    """A resumed run must cover the same prompt, model, data, rows, settings and samples."""
    same = (
        run.prompt_version_id == plan.version.id
        and run.model_id == plan.model.id
        and run.dataset_id == plan.dataset.id
        and run.split == plan.split
        and run.rows_total == len(plan.rows)
        and run.scoring == plan.scoring
        and run.settings == plan.settings_dict
        and run.samples == samples
    )
    if not same:
        raise BadInputError(
            f"run {run.id} was made with other settings; resume it with resume_run({run.id}) "
            "(or `tunelab eval --resume`) and nothing else changed"
        )


def run_process_alive(run: Run) -> bool | None:
    """Whether the process evaluating a running run is alive; None when it cannot be told
    (another host, or a run recorded before runs had an owner)."""
    import socket

    from tunelab.engine.processes import process_alive, process_start_ticks

    if run.pid is None or run.host != socket.gethostname():
        return None
    if not process_alive(run.pid):
        return False
    return run.pid_start is None or process_start_ticks(run.pid) in (None, run.pid_start)


def refresh_run_states(store: Store) -> list[Run]:
    """Mark running runs whose process vanished (killed, crashed) as interrupted, so listings
    tell the truth and `tunelab eval --resume` can finish them; returns the runs changed."""
    changed = []
    for run in store.running_runs():
        if run_process_alive(run) is False:
            error = (
                f"process {run.pid} vanished (killed or crashed) after {run.rows_done} of "
                f"{run.rows_total} rows; resume with `tunelab eval --resume {run.id}`"
            )
            if store.mark_run_interrupted(run.id, run.pid, error):
                changed.append(store.get_run(run.id))
    return changed


def resume_run(
    store: Store,
    run_id: int,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    latency_probe: int = DEFAULT_PROBE_REQUESTS,
) -> EvalResult:
    """Finish the rows an interrupted or failed run is missing, with its original settings.

    A run left `running` by a killed process is accepted; one whose process is seen still
    running is refused, and the run is claimed atomically (`Store.claim_run`), so of two
    resumes started at once only one proceeds: two processes never write the same run."""
    refresh_run_states(store)
    run = store.get_run(run_id)
    if run.status == "succeeded" and run.rows_done >= run.rows_total:
        raise BadInputError(f"run {run_id} already finished all {run.rows_total} rows")
    try:
        before_claim = store.claim_run(run_id, run, run_process_alive)
    except RunClaimedError as exc:
        raise BadInputError(str(exc)) from None
    try:
        return _resume_claimed(store, run, on_progress, should_stop, batch_size, latency_probe)
    except BaseException:
        store.release_run_claim(run_id, before_claim)
        raise


def _resume_claimed(
    store: Store,
    run: Run,
    on_progress: ProgressCallback | None,
    should_stop: StopCheck | None,
    batch_size: int,
    latency_probe: int,
) -> EvalResult:
    request = resume_request(store, run, batch_size, latency_probe)
    return evaluate(store, request, on_progress, should_stop)


def resume_request(
    store: Store,
    run: Run,
    batch_size: int = DEFAULT_BATCH_SIZE,
    latency_probe: int = DEFAULT_PROBE_REQUESTS,
) -> EvalRequest:
    """The request that continues `run` with its original settings (its missing rows)."""
    is_sample = run.sample_seed is not None
    return EvalRequest(
        prompt=store.get_prompt_version(run.prompt_ref),
        model=run.model_name,
        dataset=run.dataset_name,
        split=run.split,
        limit=None if is_sample else run.row_limit,
        sample=run.row_limit if is_sample else None,
        seed=run.sample_seed or 0,
        settings=dict(run.settings),
        scoring=run.scoring,
        metrics=list(run.metric_names),
        batch_size=batch_size,
        resume_run_id=run.id,
        latency_probe=latency_probe,
        samples=run.samples,
    )


def _execute(
    store: Store,
    plan: EvalPlan,
    loaded: Any,
    run: Run,
    jobs: Sequence[RowJob],
    request: EvalRequest,
    on_progress: ProgressCallback | None,
    should_stop: StopCheck | None,
) -> EvalResult:
    stop = should_stop or (lambda: False)
    batch_size = request.batch_size
    if not is_endpoint(plan.model):
        # Its throughput is priced at the rate of this device (CPU-hour or GPU-hour).
        store.set_run_device(run.id, str(loaded.device).split(":")[0])
    if is_endpoint(plan.model):
        # A chunk's rows are the requests in flight together: fill every concurrency slot.
        batch_size = max(batch_size, loaded.config.max_concurrency)
    done_before = store.done_row_indices(run.id)
    pending = [job for job in jobs if job.row.idx not in done_before]
    total = len(jobs)
    done = total - len(pending)
    cached_now = 0
    written_now = 0
    generated_now = 0
    started = time.perf_counter()
    interrupted = False
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}

    def tally(scores: Sequence[dict[str, float]]) -> None:
        for row_scores in scores:
            for name, value in row_scores.items():
                sums[name] = sums.get(name, 0.0) + value
                counts[name] = counts.get(name, 0) + 1

    if done_before and on_progress is not None:
        tally([o.scores for o in store.run_outputs(run.id)])

    def report() -> None:
        if on_progress is None:
            return
        elapsed = time.perf_counter() - started
        remaining = total - done
        generated = written_now - cached_now
        eta = elapsed / generated * remaining if generated else None
        running = {name: sums[name] / counts[name] for name in sums}
        on_progress(EvalProgress(done, total, cached_now, elapsed, eta, run.id, running))

    report()
    try:
        for chunk in eval_plan.in_chunks(plan, pending, batch_size, request.samples):
            if stop():
                interrupted = True
                break
            if request.samples > 1:
                outputs, others, from_cache, complete = score_sampled_chunk(
                    store, plan, loaded, chunk, request.samples, stop
                )
                written = store.add_sampled_outputs(run.id, outputs, others)
            else:
                outputs, from_cache, complete = eval_plan.score_chunk(
                    store, plan, loaded, chunk, stop, batch_size
                )
                written = store.add_run_outputs(run.id, outputs)
            tally([o.scores for o in outputs])
            done += written
            written_now += written
            cached_now += from_cache
            generated_now += len(outputs) - from_cache
            report()
            if not complete:
                interrupted = True
                break
        # An endpoint's rows are single requests already: their latencies are the probe's.
        probing = request.latency_probe > 0 and not is_endpoint(plan.model)
        if not interrupted and probing and not stop():
            probe = run_probe(
                plan, loaded, jobs, request.latency_probe, request.seed, stop, request.samples
            )
            store.add_probe_requests(run.id, probe)
    except KeyboardInterrupt:
        _finish(store, plan, run.id, "interrupted")
        raise
    except Exception as exc:
        _finish(store, plan, run.id, "failed", error=one_line(exc))
        if isinstance(exc, EngineError):
            raise
        raise EngineError(f"run {run.id} failed: {one_line(exc)}") from exc
    status = "interrupted" if interrupted else "succeeded"
    finished = _finish(store, plan, run.id, status)
    return EvalResult(
        run=finished,
        metrics=finished.metrics,
        rows=finished.rows_done,
        cached_rows=cached_now,
        new_rows=written_now,
        interrupted=interrupted,
    )


def run_metrics(store: Store, plan: EvalPlan, run_id: int) -> dict[str, Any]:
    """Aggregate metrics over every stored row of a run, its throughput and its probe latency.

    A run with no scored rows has no quality metrics at all (not an accuracy of 0).
    """
    outputs = store.run_outputs(run_id)
    samples = store.run_samples(run_id)
    result: dict[str, Any] = {}
    if outputs:
        examples = [
            Example(
                o.output,
                o.prediction or "",
                o.reference_answer if o.reference_answer is not None else o.reference,
                o.answer_found,
            )
            for o in outputs
        ]
        result = aggregate_metrics(plan.metrics, examples, [o.scores for o in outputs])
    calibration = applied_calibration(plan)
    if calibration is not None:
        result["calibration"] = calibration
    if outputs and samples:
        labels = plan.dataset.task == "classification" and bool(plan.dataset.labels)
        result.update(vote_metrics(plan.metrics, outputs, samples, labels))
    # A vote run's cost is all of its samples: each row's tokens and time add up over them.
    result.update(throughput_stats(with_sample_costs(outputs, samples)))
    result.update(probe_stats(store.probe_requests(run_id)))
    result["cached_rows"] = sum(1 for o in outputs if o.cached)
    return result


def throughput_stats(outputs: Sequence[RunOutput]) -> dict[str, float]:
    """Rows and tokens per second of batch wall time, over the rows that were generated.

    Each row holds its share of its batch's wall time, so the shares add up to the time the
    batches took; cached rows are left out (their time is a lookup).
    """
    generated = [o for o in outputs if not o.cached]
    busy_s = sum(o.latency_ms for o in generated) / 1000
    if not generated or busy_s <= 0:
        return {}
    n = len(generated)
    return {
        "rows_per_second": n / busy_s,
        "batch_ms_per_row": busy_s * 1000 / n,
        "tokens_in_mean": sum(o.tokens_in for o in generated) / n,
        "tokens_out_mean": sum(o.tokens_out for o in generated) / n,
        "tokens_per_second": sum(o.tokens_out for o in generated) / busy_s,
    }


def _finish(
    store: Store, plan: EvalPlan, run_id: int, status: str, error: str | None = None
) -> Run:
    try:
        metrics = run_metrics(store, plan, run_id)
    except Exception as exc:
        metrics = {}
        error = error or f"aggregating metrics failed: {one_line(exc)}"
        status = "failed"
    return store.finish_run(run_id, status, metrics, error)
