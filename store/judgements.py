"""LLM judge runs and what they found: a score and rationale per output, or a verdict per
row of two runs from two passes with the positions swapped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .base import StoreBase
from .connection import dumps, loads, utc_now
from .errors import NotFoundError, StoreError

JUDGE_KINDS = ("score", "pair")
"""A judge run scores one run's outputs, or picks the better of two runs' outputs."""
PICKS = ("a", "b")
VERDICTS = ("a", "b", "tie", "unparsed")
"""A pairwise verdict: run A's output is better, run B's, the two passes disagree (tie), or
a pass's reply could not be read (unparsed, counted apart, never a win or a tie)."""


@dataclass(frozen=True)
class JudgeRun:
    """One application of a rubric by a judge model to a run (or a pair of runs)."""

    id: int
    kind: str
    rubric_version_id: int
    rubric_ref: str
    judge_model_id: int
    judge_model_name: str
    run_id: int
    run_b_id: int | None
    scale_min: int | None
    scale_max: int | None
    status: str
    summary: dict[str, Any]
    error: str | None
    started_at: str
    finished_at: str | None


@dataclass(frozen=True)
class NewJudgement:
    """A judge's reply on one output, parsed; `score` is None when the reply had no usable
    score (`problem` says why)."""

    run_output_id: int
    score: int | None
    rationale: str
    raw: str
    cached: bool
    problem: str | None = None


@dataclass(frozen=True)
class Judgement:
    """A stored judgement of one output."""

    id: int
    judge_run_id: int
    run_output_id: int
    score: int | None
    rationale: str
    problem: str | None
    raw: str
    cached: bool
    created_at: str
    row_idx: int = 0
    rating: int | None = None
    """The output's latest human rating (1-5), for agreement; None when unrated."""


@dataclass(frozen=True)
class NewPairVerdict:
    """Both passes of a pairwise judgement of one row: the pick with A's output shown first,
    the pick with B's shown first (each `a`, `b` or None when unreadable), and the verdict."""

    output_a_id: int
    output_b_id: int
    a_first: str | None
    b_first: str | None
    verdict: str
    raw_a_first: str
    raw_b_first: str
    cached: bool

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise StoreError(f"a verdict is one of {', '.join(VERDICTS)}, not {self.verdict!r}")
        for pick in (self.a_first, self.b_first):
            if pick is not None and pick not in PICKS:
                raise StoreError(f"a pass picks 'a' or 'b', not {pick!r}")


@dataclass(frozen=True)
class PairVerdict:
    """A stored pairwise verdict of one row."""

    id: int
    judge_run_id: int
    output_a_id: int
    output_b_id: int
    a_first: str | None
    b_first: str | None
    verdict: str
    raw_a_first: str
    raw_b_first: str
    cached: bool
    created_at: str
    row_idx: int = 0


@dataclass(frozen=True)
class JudgeRunContents:
    """A judge run with everything it stored, for `tunelab judge show` and the TUI."""

    run: JudgeRun
    judgements: list[Judgement] = field(default_factory=list)
    verdicts: list[PairVerdict] = field(default_factory=list)


_JUDGE_RUN_SELECT = (
    "SELECT j.*, p.name || '@' || v.version AS rubric_ref, m.name AS judge_model_name "
    "FROM judge_runs j JOIN prompt_versions v ON v.id = j.rubric_version_id "
    "JOIN prompts p ON p.id = v.prompt_id JOIN models m ON m.id = j.judge_model_id"
)
_JUDGEMENT_SELECT = (
    "SELECT g.*, o.row_idx AS row_idx, (SELECT rating FROM ratings WHERE run_output_id = "
    "o.id ORDER BY id DESC LIMIT 1) AS rating FROM judgements g "
    "JOIN run_outputs o ON o.id = g.run_output_id"
)


def _judge_run_from_row(row: dict[str, Any]) -> JudgeRun:
    return JudgeRun(
        id=row["id"],
        kind=row["kind"],
        rubric_version_id=row["rubric_version_id"],
        rubric_ref=row["rubric_ref"],
        judge_model_id=row["judge_model_id"],
        judge_model_name=row["judge_model_name"],
        run_id=row["run_id"],
        run_b_id=row["run_b_id"],
        scale_min=row["scale_min"],
        scale_max=row["scale_max"],
        status=row["status"],
        summary=loads(row["summary"], {}),
        error=row["error"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


def _judgement_from_row(row: dict[str, Any]) -> Judgement:
    return Judgement(
        id=row["id"],
        judge_run_id=row["judge_run_id"],
        run_output_id=row["run_output_id"],
        score=row["score"],
        rationale=row["rationale"],
        problem=row["problem"],
        raw=row["raw"],
        cached=bool(row["cached"]),
        created_at=row["created_at"],
        row_idx=row["row_idx"],
        rating=row["rating"],
    )


class JudgementStore(StoreBase):
    def create_judge_run(
        self,
        kind: str,
        rubric_version_id: int,
        judge_model_id: int,
        run_id: int,
        run_b_id: int | None = None,
        scale: tuple[int, int] | None = None,
    ) -> JudgeRun:
        """Start a judge run; its rows are added as they are judged.

        Args:
            kind: `score` (one run's outputs) or `pair` (two runs' outputs of the same rows).
            rubric_version_id: the rubric, a prompt version.
            judge_model_id: the model that judges.
            run_id: the judged run (run A of a pair).
            run_b_id: run B of a pair.
            scale: the score scale (lowest, highest) of a `score` run.
        """
        if kind not in JUDGE_KINDS:
            raise StoreError(f"a judge run's kind is one of {', '.join(JUDGE_KINDS)}, not {kind!r}")
        with self._write() as db:
            judge_run_id = (
                db.table("judge_runs")
                .insert(
                    {
                        "kind": kind,
                        "rubric_version_id": rubric_version_id,
                        "judge_model_id": judge_model_id,
                        "run_id": run_id,
                        "run_b_id": run_b_id,
                        "scale_min": scale[0] if scale else None,
                        "scale_max": scale[1] if scale else None,
                        "status": "running",
                        "summary": "{}",
                        "started_at": utc_now(),
                    }
                )
                .last_pk
            )
        return self.get_judge_run(int(judge_run_id or 0))

    def get_judge_run(self, judge_run_id: int) -> JudgeRun:
        row = self._one(_JUDGE_RUN_SELECT + " WHERE j.id = ?", [judge_run_id])
        if row is None:
            raise NotFoundError("judge run", str(judge_run_id))
        return _judge_run_from_row(row)

    def list_judge_runs(self, run_id: int | None = None) -> list[JudgeRun]:
        """Judge runs, newest first; with `run_id`, those that judged that run (as A or B)."""
        where, params = (
            ("", []) if run_id is None else (" WHERE ? IN (j.run_id, j.run_b_id)", [run_id])
        )
        rows = self._query(_JUDGE_RUN_SELECT + where + " ORDER BY j.id DESC", params)
        return [_judge_run_from_row(r) for r in rows]

    def add_judgements(self, judge_run_id: int, judgements: Sequence[NewJudgement]) -> int:
        """Store judgements of outputs; returns how many were new (one per output per run)."""
        now = utc_now()
        added = 0
        with self._write() as db:
            for j in judgements:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO judgements (judge_run_id, run_output_id, score, "
                    "rationale, problem, raw, cached, created_at) VALUES (?,?,?,?,?,?,?,?)",
                    [judge_run_id, j.run_output_id, j.score, j.rationale, j.problem, j.raw,
                     int(j.cached), now],
                )  # fmt: skip
                added += cursor.rowcount
        return added

    def add_pair_verdicts(self, judge_run_id: int, verdicts: Sequence[NewPairVerdict]) -> int:
        """Store pairwise verdicts; returns how many were new (one per row per run)."""
        now = utc_now()
        added = 0
        with self._write() as db:
            for v in verdicts:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO pair_verdicts (judge_run_id, output_a_id, "
                    "output_b_id, a_first, b_first, verdict, raw_a_first, raw_b_first, cached, "
                    "created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    [judge_run_id, v.output_a_id, v.output_b_id, v.a_first, v.b_first,
                     v.verdict, v.raw_a_first, v.raw_b_first, int(v.cached), now],
                )  # fmt: skip
                added += cursor.rowcount
        return added

    def finish_judge_run(
        self,
        judge_run_id: int,
        status: str,
        summary: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> JudgeRun:
        if status not in ("succeeded", "failed", "interrupted"):
            raise StoreError(f"bad judge run status {status!r}")
        with self._write() as db:
            db.execute(
                "UPDATE judge_runs SET status = ?, summary = ?, error = ?, finished_at = ? "
                "WHERE id = ?",
                [status, dumps(summary or {}), error, utc_now(), judge_run_id],
            )
        return self.get_judge_run(judge_run_id)

    def judgements(self, judge_run_id: int) -> list[Judgement]:
        """A score run's judgements in row order, each with its output's human rating."""
        rows = self._query(
            _JUDGEMENT_SELECT + " WHERE g.judge_run_id = ? ORDER BY o.row_idx", [judge_run_id]
        )
        return [_judgement_from_row(r) for r in rows]

    def pair_verdicts(self, judge_run_id: int) -> list[PairVerdict]:
        rows = self._query(
            "SELECT p.*, o.row_idx AS row_idx FROM pair_verdicts p JOIN run_outputs o "
            "ON o.id = p.output_a_id WHERE p.judge_run_id = ? ORDER BY o.row_idx",
            [judge_run_id],
        )
        return [PairVerdict(**{**r, "cached": bool(r["cached"])}) for r in rows]

    def judge_run_contents(self, judge_run_id: int) -> JudgeRunContents:
        run = self.get_judge_run(judge_run_id)
        if run.kind == "pair":
            return JudgeRunContents(run, verdicts=self.pair_verdicts(judge_run_id))
        return JudgeRunContents(run, judgements=self.judgements(judge_run_id))

    def latest_judgements(self, run_id: int) -> dict[int, Judgement]:
        """Output id → its judgement by the newest score run on `run_id` that judged it."""
        rows = self._query(
            _JUDGEMENT_SELECT + " JOIN judge_runs j ON j.id = g.judge_run_id "
            "WHERE o.run_id = ? AND j.kind = 'score' ORDER BY g.judge_run_id",
            [run_id],
        )
        return {r["run_output_id"]: _judgement_from_row(r) for r in rows}
