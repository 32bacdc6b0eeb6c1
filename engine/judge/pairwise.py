"""Pairwise judging: which of two runs' outputs of the same row is better, position-fair.

Each shared row is judged twice, A's output shown first, then B's: a pick counts only when
both passes agree (a win or a loss), two passes that disagree are a tie (the judge followed
the position, not the outputs), and a pass with no readable pick makes the row unparsed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from tunelab.engine.errors import BadInputError, EngineError
from tunelab.engine.judge.asking import ask, judge_settings, load_judge_model, pick_prompt
from tunelab.engine.judge.parsing import parse_pick
from tunelab.engine.judge.records import JudgeProgress, PairReport, PairSummary
from tunelab.engine.judge.rubric import check_rubric_for, load_rubric
from tunelab.engine.judge.scoring import (
    JudgeProgressCallback,
    StopCheck,
    check_endpoint_settings,
    judged_cases,
    one_line,
    run_outputs_to_judge,
)
from tunelab.store import NewPairVerdict, PairVerdict, Store

CONFIDENCE = 0.95


@dataclass(frozen=True)
class PairRequest:
    """Two runs to judge against each other on their shared rows.

    Args:
        run_a_id: run A (wins are A's).
        run_b_id: run B.
        rubric: the rubric's reference; its `output` is both responses, labelled 1 and 2.
        judge_model: the model that judges (`builtin`, a workspace model, a folder).
        batch_size: rows judged together (each row is two prompts).
        use_cache: read and write the response cache (greedy rubrics only).
    """

    run_a_id: int
    run_b_id: int
    rubric: str
    judge_model: str = "builtin"
    batch_size: int = 8
    use_cache: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise BadInputError(f"batch size must be at least 1, got {self.batch_size}")
        if self.run_a_id == self.run_b_id:
            raise BadInputError(f"judge two different runs, not run {self.run_a_id} with itself")


def pick_of(pick: int | None, a_shown_first: bool) -> str | None:
    """A pass's pick (response 1 or 2) as the run it names, `a` or `b`."""
    if pick is None:
        return None
    return "a" if (pick == 1) == a_shown_first else "b"


def combine(a_first: str | None, b_first: str | None) -> str:
    """The verdict of a row from its two passes: agreed → that run, disagreed → tie."""
    if a_first is None or b_first is None:
        return "unparsed"
    return a_first if a_first == b_first else "tie"


def summarize_pairs(verdicts: Sequence[NewPairVerdict | PairVerdict]) -> PairSummary:
    """Wins, losses and ties of A over B, and A's win rate among decided rows with a Wilson
    interval and a binomial test (scipy)."""
    counts = {v: sum(1 for x in verdicts if x.verdict == v) for v in ("a", "b", "tie", "unparsed")}
    wins, losses = counts["a"], counts["b"]
    decided = wins + losses
    rate = low = high = p_value = None
    if decided:
        from scipy.stats import binomtest

        test = binomtest(wins, decided, 0.5)
        interval = test.proportion_ci(CONFIDENCE, method="wilson")
        rate, low, high = wins / decided, float(interval.low), float(interval.high)
        p_value = float(test.pvalue)
    readable = [(x.a_first, "a") for x in verdicts if x.a_first is not None]
    readable += [(x.b_first, "b") for x in verdicts if x.b_first is not None]
    first = sum(1 for pick, shown_first in readable if pick == shown_first)
    return PairSummary(
        rows=len(verdicts),
        wins=wins,
        losses=losses,
        ties=counts["tie"],
        unparsed=counts["unparsed"],
        cached=sum(1 for x in verdicts if x.cached),
        win_rate=rate,
        win_rate_low=low,
        win_rate_high=high,
        p_value=p_value,
        first_position_picks=first / len(readable) if readable else None,
    )


def judge_pair(
    store: Store,
    request: PairRequest,
    on_progress: JudgeProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> PairReport:
    """Judge two runs' outputs of every row they share, both positions, storing each verdict.

    The runs must cover the same dataset split; rows only one of them has are left out.
    """
    stop = should_stop or (lambda: False)
    run_a, outputs_a = run_outputs_to_judge(store, request.run_a_id)
    run_b, outputs_b = run_outputs_to_judge(store, request.run_b_id)
    if (run_a.dataset_id, run_a.split) != (run_b.dataset_id, run_b.split):
        raise BadInputError(
            f"runs {run_a.id} and {run_b.id} judged different data ({run_a.dataset_name}/"
            f"{run_a.split} vs {run_b.dataset_name}/{run_b.split}); pair runs of one split"
        )
    by_row_b = {o.row_idx: o for o in outputs_b}
    shared_a = [o for o in outputs_a if o.row_idx in by_row_b]
    if not shared_a:
        raise BadInputError(f"runs {run_a.id} and {run_b.id} share no rows to judge")
    shared_b = [by_row_b[o.row_idx] for o in shared_a]
    rubric = load_rubric(store, request.rubric)
    check_rubric_for(store, rubric, store.get_dataset(run_a.dataset_name), run_a.split)
    judge = load_judge_model(store, request.judge_model)
    check_endpoint_settings(rubric, judge)
    cases = judged_cases(store, run_a, shared_a)
    prompts = []
    for case, a, b in zip(cases, shared_a, shared_b, strict=True):
        prompts.append(
            (pick_prompt(rubric, judge, case, a.output, b.output),
             pick_prompt(rubric, judge, case, b.output, a.output))
        )  # fmt: skip
    created = store.create_judge_run("pair", rubric.version.id, judge.record.id, run_a.id, run_b.id)
    settings = judge_settings(rubric)
    done = cached = 0
    interrupted = False

    def report() -> None:
        if on_progress is not None:
            on_progress(JudgeProgress(done, len(prompts), cached, created.id))

    report()
    try:
        for start in range(0, len(prompts), request.batch_size):
            if stop():
                interrupted = True
                break
            chunk = range(start, min(start + request.batch_size, len(prompts)))
            flat = [p for i in chunk for p in prompts[i]]
            replies = ask(store, judge, flat, settings, request.use_cache, stop)
            new = []
            for n, i in enumerate(chunk):
                first, second = replies[2 * n], replies[2 * n + 1]
                if first is None or second is None:
                    continue
                a_first = pick_of(parse_pick(first.text), a_shown_first=True)
                b_first = pick_of(parse_pick(second.text), a_shown_first=False)
                new.append(
                    NewPairVerdict(shared_a[i].id, shared_b[i].id, a_first, b_first,
                                   combine(a_first, b_first), first.text, second.text,
                                   first.cached and second.cached)
                )  # fmt: skip
            store.add_pair_verdicts(created.id, new)
            done += len(new)
            cached += sum(1 for v in new if v.cached)
            report()
            if len(new) < len(chunk):
                interrupted = True
                break
    except KeyboardInterrupt:
        _finish(store, created.id, "interrupted")
        raise
    except Exception as exc:
        _finish(store, created.id, "failed", one_line(exc))
        if isinstance(exc, BadInputError | EngineError):
            raise
        raise EngineError(f"judge run {created.id} failed: {one_line(exc)}") from exc
    return _finish(store, created.id, "interrupted" if interrupted else "succeeded")


def _finish(store: Store, judge_run_id: int, status: str, error: str | None = None) -> PairReport:
    verdicts = store.pair_verdicts(judge_run_id)
    summary = summarize_pairs(verdicts)
    finished = store.finish_judge_run(judge_run_id, status, asdict(summary), error or None)
    return PairReport(finished, verdicts, summary, status == "interrupted")


def pair_report_of(store: Store, judge_run_id: int) -> PairReport:
    """A stored pairwise run as a report."""
    run = store.get_judge_run(judge_run_id)
    if run.kind != "pair":
        raise BadInputError(f"judge run {judge_run_id} scores one run; it is not pairwise")
    verdicts = store.pair_verdicts(judge_run_id)
    return PairReport(run, verdicts, summarize_pairs(verdicts), run.status == "interrupted")
