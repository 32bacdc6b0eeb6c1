"""The per-row judge: a rubric's score and rationale for every output of a run.

Everything that can be checked is checked before the judge run is created (the run has
outputs, the rubric's variables exist, every judge prompt fits the judge's context window),
so bad input stores nothing. Judgements are written chunk by chunk, like a run's outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from tunelab.engine.errors import BadInputError, EngineError, one_line
from tunelab.engine.judge.agreement import agreement, rated_pairs
from tunelab.engine.judge.asking import (
    JudgeCase,
    JudgeModel,
    JudgePrompt,
    ask,
    judge_settings,
    load_judge_model,
    score_prompt,
)
from tunelab.engine.judge.parsing import parse_score
from tunelab.engine.judge.records import (
    CaseJudgement,
    JudgeProgress,
    JudgeReport,
    ScoreSummary,
)
from tunelab.engine.judge.rubric import (
    Rubric,
    ScoreScale,
    check_rubric_for,
    check_variables,
    input_text,
    known_variables,
    load_rubric,
)
from tunelab.store import Judgement, JudgeRun, NewJudgement, Run, RunOutput, Store

JudgeProgressCallback = Callable[[JudgeProgress], None]
StopCheck = Callable[[], bool]


@dataclass(frozen=True)
class JudgeRequest:
    """What to judge.

    Args:
        run_id: the evaluation run whose outputs are judged.
        rubric: the rubric's reference (`NAME@VERSION`, `NAME`, `NAME:label`).
        judge_model: the model that judges: `builtin`, a workspace model (local,
            fine-tuned or endpoint), or a folder.
        batch_size: outputs judged together; also how often judgements are written.
        use_cache: read and write the response cache (greedy rubrics only).
    """

    run_id: int
    rubric: str
    judge_model: str = "builtin"
    batch_size: int = 8
    use_cache: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise BadInputError(f"batch size must be at least 1, got {self.batch_size}")


def judged_cases(store: Store, run: Run, outputs: Sequence[RunOutput]) -> list[JudgeCase]:
    """Each output of `run` as the judge sees it, with its dataset row."""
    dataset = store.get_dataset(run.dataset_name)
    rows = store.dataset_rows(dataset.name, run.split, indices=[o.row_idx for o in outputs])
    by_idx = {r.idx: r.data for r in rows}
    cases = []
    for output in outputs:
        row = by_idx.get(output.row_idx, {})
        cases.append(JudgeCase(input_text(dataset, row), output.output, output.reference, row))
    return cases


def run_outputs_to_judge(store: Store, run_id: int) -> tuple[Run, list[RunOutput]]:
    """A run and its outputs; a run without outputs cannot be judged."""
    run = store.get_run(run_id)
    outputs = store.run_outputs(run_id)
    if not outputs:
        raise BadInputError(f"run {run_id} has no outputs to judge; evaluate it first")
    return run, outputs


def judge_cases(
    store: Store,
    rubric: Rubric,
    judge: JudgeModel,
    cases: Sequence[JudgeCase],
    use_cache: bool = True,
    should_stop: StopCheck | None = None,
) -> list[CaseJudgement | None]:
    """Score cases on a rubric: the function a caller outside a run (an assertion) uses.

    Returns:
        One judgement per case, in order; None for a case cut short by `should_stop`.
    """
    prompts = [score_prompt(rubric, judge, case) for case in cases]
    return _judge_prompts(store, rubric, judge, prompts, use_cache, should_stop)


def judge_one(
    store: Store, rubric_ref: str, case: JudgeCase, judge_model: str = "builtin"
) -> CaseJudgement:
    """Score one case on a rubric (a per-case assertion's "judge rubric"): the rubric's
    variables are checked against the case's row, and the reply is cached like any other."""
    rubric = load_rubric(store, rubric_ref)
    known = known_variables(None, case.row)
    check_variables(rubric.version.template, rubric.version.system, known, "the case",
                    f"rubric {rubric.ref}")  # fmt: skip
    judge = load_judge_model(store, judge_model)
    check_endpoint_settings(rubric, judge)
    (judged,) = judge_cases(store, rubric, judge, [case])
    assert judged is not None  # nothing can stop a call without should_stop
    return judged


def _judge_prompts(
    store: Store,
    rubric: Rubric,
    judge: JudgeModel,
    prompts: Sequence[JudgePrompt],
    use_cache: bool,
    should_stop: StopCheck | None,
) -> list[CaseJudgement | None]:
    replies = ask(store, judge, prompts, judge_settings(rubric), use_cache, should_stop)
    judged: list[CaseJudgement | None] = []
    for reply in replies:
        if reply is None:
            judged.append(None)
            continue
        parsed = parse_score(reply.text, rubric.scale)
        judged.append(
            CaseJudgement(parsed.score, parsed.rationale, parsed.problem, reply.text, reply.cached)
        )
    return judged


def check_endpoint_settings(rubric: Rubric, judge: JudgeModel) -> None:
    if judge.endpoint:
        from tunelab.engine.generation.endpoint import check_settings

        check_settings(judge_settings(rubric))


def judge_run(
    store: Store,
    request: JudgeRequest,
    on_progress: JudgeProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> JudgeReport:
    """Score every output of a run on a rubric, storing each score and rationale.

    Returns:
        the judge run with its judgements, score summary and agreement with human ratings;
        `interrupted` when `should_stop` fired.
    """
    stop = should_stop or (lambda: False)
    run, outputs = run_outputs_to_judge(store, request.run_id)
    rubric = load_rubric(store, request.rubric)
    check_rubric_for(store, rubric, store.get_dataset(run.dataset_name), run.split)
    judge = load_judge_model(store, request.judge_model)
    check_endpoint_settings(rubric, judge)
    cases = judged_cases(store, run, outputs)
    prompts = [score_prompt(rubric, judge, case) for case in cases]  # each checked to fit
    scale = rubric.scale
    created = store.create_judge_run(
        "score", rubric.version.id, judge.record.id, run.id, scale=(scale.low, scale.high)
    )
    done = cached = 0
    interrupted = False

    def report() -> None:
        if on_progress is not None:
            on_progress(JudgeProgress(done, len(outputs), cached, created.id))

    report()
    try:
        for start in range(0, len(outputs), request.batch_size):
            if stop():
                interrupted = True
                break
            chunk = range(start, min(start + request.batch_size, len(outputs)))
            judged = _judge_prompts(
                store, rubric, judge, [prompts[i] for i in chunk], request.use_cache, stop
            )
            new = [
                NewJudgement(outputs[i].id, j.score, j.rationale, j.raw, j.cached, j.problem)
                for i, j in zip(chunk, judged, strict=True)
                if j is not None
            ]
            store.add_judgements(created.id, new)
            done += len(new)
            cached += sum(1 for j in new if j.cached)
            report()
            if len(new) < len(chunk):
                interrupted = True
                break
    except KeyboardInterrupt:
        _finish(store, created.id, scale, "interrupted")
        raise
    except Exception as exc:
        _finish(store, created.id, scale, "failed", one_line(exc))
        if isinstance(exc, BadInputError | EngineError):
            raise
        raise EngineError(f"judge run {created.id} failed: {one_line(exc)}") from exc
    finished, judgements, summary = _finish(
        store, created.id, scale, "interrupted" if interrupted else "succeeded"
    )
    return JudgeReport(
        finished, judgements, summary, agreement(rated_pairs(judgements), scale), interrupted
    )


def summarize(judgements: Sequence[Judgement], scale: ScoreScale) -> ScoreSummary:
    """How many outputs were scored, how many replies were unparseable, and the spread."""
    scores = [j.score for j in judgements if j.score is not None]
    distribution = {str(s): 0 for s in range(scale.low, scale.high + 1)}
    for score in scores:
        distribution[str(score)] += 1
    return ScoreSummary(
        rows=len(judgements),
        scored=len(scores),
        unparseable=len(judgements) - len(scores),
        cached=sum(1 for j in judgements if j.cached),
        mean=sum(scores) / len(scores) if scores else None,
        distribution=distribution,
    )


def _finish(
    store: Store, judge_run_id: int, scale: ScoreScale, status: str, error: str | None = None
) -> tuple[JudgeRun, list[Judgement], ScoreSummary]:
    judgements = store.judgements(judge_run_id)
    summary = summarize(judgements, scale)
    finished = store.finish_judge_run(judge_run_id, status, asdict(summary), error)
    return finished, judgements, summary


def report_of(store: Store, judge_run_id: int) -> JudgeReport:
    """A stored score run as a report (for `tunelab judge show` and the TUI)."""
    run = store.get_judge_run(judge_run_id)
    if run.kind != "score":
        raise BadInputError(f"judge run {judge_run_id} is pairwise; show it as a pair run")
    scale = ScoreScale(run.scale_min or 1, run.scale_max or 5)
    judgements = store.judgements(judge_run_id)
    return JudgeReport(
        run,
        judgements,
        summarize(judgements, scale),
        agreement(rated_pairs(judgements), scale),
        run.status == "interrupted",
    )
