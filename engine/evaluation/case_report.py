"""A test-case run read back: each case's verdict and, for a failed one, which assertion
failed and why — what `tunelab run show` prints and its `--json` returns.

The text assertions are deterministic, so their reasons are recomputed from the stored
output and the case's assertions (nothing extra is stored per row beyond the 0/1 scores);
a judge assertion's verdict and score are the stored ones (`assert_N`, `assert_N_score`),
never asked again.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunelab.engine.data.cases import DESCRIPTION_COLUMN, assertions_of, is_cases_dataset
from tunelab.engine.evaluation.answers import output_rule_spec, parse_rule
from tunelab.engine.evaluation.assertions import check_assertion
from tunelab.store import Store


@dataclass(frozen=True)
class AssertionVerdict:
    assertion: str
    """The assertion as a report names it (`regex /\\d+/`)."""
    passed: bool
    reason: str


@dataclass(frozen=True)
class CaseVerdict:
    row_idx: int
    description: str
    passed: bool
    output: str
    assertions: list[AssertionVerdict]


def case_verdicts(store: Store, run_id: int) -> list[CaseVerdict] | None:
    """Every case of a test-case run in row order; None when the run's dataset is not one."""
    run = store.get_run(run_id)
    dataset = store.get_dataset_by_id(run.dataset_id)
    if not is_cases_dataset(dataset):
        return None
    version = store.get_prompt_version_by_id(run.prompt_version_id)
    spec = output_rule_spec(version.settings, dataset.answer_rule)
    rule = parse_rule(spec) if spec else None
    outputs = store.run_outputs(run_id)
    rows = {
        r.idx: r.data
        for r in store.dataset_rows(dataset.name, run.split, indices=[o.row_idx for o in outputs])
    }
    verdicts: list[CaseVerdict] = []
    for out in outputs:
        data = rows.get(out.row_idx, {})
        checked: list[AssertionVerdict] = []
        for i, assertion in enumerate(assertions_of(data), start=1):
            stored = out.scores.get(f"assert_{i}")
            if assertion.type == "judge":
                score = out.scores.get(f"assert_{i}_score")
                passed = bool(stored)
                threshold = assertion.threshold or 0.0
                sign = ">=" if score is not None and score >= threshold else "<"
                reason = (
                    "no judge score stored"
                    if score is None
                    else f"judge score {score:g} {sign} {threshold:g}"
                )
            else:
                result = check_assertion(assertion, out.output, rule)
                passed, reason = result.passed, result.reason
            checked.append(AssertionVerdict(assertion.name, passed, reason))
        verdicts.append(
            CaseVerdict(
                out.row_idx,
                str(data.get(DESCRIPTION_COLUMN, f"case {out.row_idx + 1}")),
                bool(out.scores.get("pass")),
                out.output,
                checked,
            )
        )
    return verdicts
