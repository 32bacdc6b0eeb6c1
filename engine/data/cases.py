"""Test-case files: variables plus assertions per case, added as a dataset (promptfoo's format).

A file is YAML (a list of cases, or a mapping with a `tests:` list, as in promptfoo's
config) or JSONL (one case per line). Each case is `{vars: {...}, assert: [{type, value,
...}], description?}`; its variables become the row's columns (what the prompt's template
names) and its assertions are kept on the row under `assert`. Everything that can be checked
before a run is checked here, with the case and assertion named: an unknown type, a regex
that does not compile, a JSON Schema that is not one, a numeric value that is not a number,
a judge rubric that is not in the workspace. The checking of outputs lives in
`engine.evaluation.assertions`, which ranks above this package.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.engine.errors import BadInputError
from tunelab.store import Dataset, NewDataset, NewSplit, Store, StoreError

ASSERT_COLUMN = "assert"
"""The row column holding a case's assertions (a list of mappings)."""
DESCRIPTION_COLUMN = "description"
CASE_METRICS = ["pass", "assertion_pass"]
"""Per row: 1 when every assertion passed; the share of assertions that passed."""
BASE_TYPES = ("equals", "contains", "icontains", "regex", "is-json", "numeric", "judge")
"""Assertion types; each also exists negated as `not-<type>`."""
CASE_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Assertion:
    """One checked assertion of a case."""

    type: str
    """One of BASE_TYPES (without `not-`)."""
    negate: bool = False
    value: Any = None
    """The expected text, pattern, number or JSON Schema (None: is-json without a schema)."""
    tolerance: float = 0.0
    """numeric: the largest allowed absolute difference."""
    rubric: str | None = None
    """judge: the rubric prompt version, NAME@V."""
    threshold: float | None = None
    """judge: the lowest passing score on the rubric's scale."""
    model: str = "builtin"
    """judge: the workspace model that judges."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """How a report names it: `not-contains "sorry"`, `regex /\\d+/`."""
        kind = ("not-" if self.negate else "") + self.type
        if self.type == "judge":
            return f"{kind} {self.rubric} >= {self.threshold:g}"
        if self.type == "regex":
            return f"{kind} /{self.value}/"
        if self.type == "is-json":
            return kind + (" (with schema)" if self.value is not None else "")
        if self.type == "numeric":
            return f"{kind} {self.value} ± {self.tolerance:g}"
        return f"{kind} {json.dumps(self.value, ensure_ascii=False)}"


def parse_assertion(raw: Any, where: str) -> Assertion:
    """One assertion mapping, checked; `where` names it in errors ("case 3, assertion 2")."""
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise BadInputError(f"{where}: an assertion is a mapping with a 'type'")
    kind = raw["type"].strip()
    negate = kind.startswith("not-")
    base = kind[4:] if negate else kind
    if base not in BASE_TYPES:
        known = ", ".join(BASE_TYPES)
        raise BadInputError(f"{where}: unknown assertion type {kind!r}; use {known} or not-TYPE")
    value = raw.get("value")
    if base in ("equals", "contains", "icontains"):
        if not isinstance(value, str | int | float) or isinstance(value, bool) or value == "":
            raise BadInputError(f"{where}: {kind} needs a non-empty text value")
        return Assertion(base, negate, str(value))
    if base == "regex":
        if not isinstance(value, str) or not value:
            raise BadInputError(f"{where}: regex needs a pattern as its value")
        try:
            re.compile(value)
        except re.error as exc:
            raise BadInputError(f"{where}: regex {value!r} does not compile: {exc}") from None
        return Assertion(base, negate, value)
    if base == "is-json":
        if value is not None:
            _check_schema(value, where)
        return Assertion(base, negate, value)
    if base == "numeric":
        number = _number(value, f"{where}: numeric needs a number as its value")
        tolerance = _number(raw.get("tolerance", 0), f"{where}: tolerance must be a number >= 0")
        if tolerance < 0:
            raise BadInputError(f"{where}: tolerance must be a number >= 0")
        return Assertion(base, negate, number, tolerance=tolerance)
    rubric = raw.get("rubric", value)
    if not isinstance(rubric, str) or "@" not in rubric:
        raise BadInputError(f"{where}: judge needs rubric: NAME@V (a rubric prompt version)")
    threshold = _number(raw.get("threshold"), f"{where}: judge needs a numeric threshold")
    model = raw.get("model", "builtin")
    if not isinstance(model, str) or not model:
        raise BadInputError(f"{where}: judge model must be a workspace model name")
    return Assertion(base, negate, None, rubric=rubric, threshold=threshold, model=model)


def _number(value: Any, message: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadInputError(message)
    try:
        return float(value)
    except ValueError:
        raise BadInputError(message) from None


def _check_schema(schema: Any, where: str) -> None:
    import jsonschema  # deferred: only is-json assertions with a schema need it

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise BadInputError(
            f"{where}: the is-json value is not a JSON Schema: {exc.message}"
        ) from None
    except (TypeError, AttributeError):
        raise BadInputError(f"{where}: the is-json value is not a JSON Schema") from None


def assertions_of(row: dict[str, Any]) -> list[Assertion]:
    """A stored case row's assertions (checked when the file was added)."""
    raw = row.get(ASSERT_COLUMN) or []
    return [parse_assertion(a, f"assertion {i}") for i, a in enumerate(raw, start=1)]


SOURCE_PREFIX = "cases:"


def is_cases_dataset(dataset: Dataset) -> bool:
    """A dataset added from a test-case file scores by its assertions."""
    return dataset.source.startswith(SOURCE_PREFIX)


def read_cases(path: Path) -> list[dict[str, Any]]:
    """The raw cases of a YAML or JSONL file, in order; one-line errors for a bad file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise BadInputError(f"{path} does not exist") from None
    except UnicodeDecodeError:
        raise BadInputError(f"{path} is not UTF-8; re-save it as UTF-8") from None
    if path.suffix.lower() in CASE_SUFFIXES:
        import yaml  # deferred: only test-case files are YAML

        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark is not None else ""
            raise BadInputError(f"{path}: not valid YAML{at}") from None
        if isinstance(loaded, dict) and "tests" in loaded:
            loaded = loaded["tests"]
    else:
        loaded = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                loaded.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise BadInputError(f"{path}: invalid JSON on line {number}: {exc.msg}") from None
    if not isinstance(loaded, list) or not loaded:
        raise BadInputError(
            f"{path}: a test-case file is a non-empty list of cases (vars + assert), "
            "or a mapping with a 'tests:' list"
        )
    return loaded


def looks_like_cases(path: Path) -> bool:
    """YAML files are case files; a JSONL file is one when its first case has vars and assert."""
    if path.suffix.lower() in CASE_SUFFIXES:
        return True
    if path.suffix.lower() != ".jsonl" or not path.is_file():
        return False
    with path.open(encoding="utf-8-sig", errors="replace") as handle:
        first = next((line for line in handle if line.strip()), "")
    try:
        row = json.loads(first)
    except json.JSONDecodeError:
        return False
    return isinstance(row, dict) and "vars" in row and ASSERT_COLUMN in row


def case_rows(
    cases: Sequence[Any], store: Store | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows (variables + `assert`) and the variable names, every assertion checked.

    Args:
        cases: the raw cases.
        store: when given, a judge assertion's rubric must exist in it.
    """
    rows: list[dict[str, Any]] = []
    names: list[str] | None = None
    for number, case in enumerate(cases, start=1):
        where = f"case {number}"
        if not isinstance(case, dict):
            raise BadInputError(f"{where} is not a mapping with vars and assert")
        variables = case.get("vars") or {}
        if not isinstance(variables, dict) or not all(isinstance(k, str) for k in variables):
            raise BadInputError(f"{where}: vars must be a mapping of names to values")
        raw = case.get(ASSERT_COLUMN)
        if not isinstance(raw, list) or not raw:
            raise BadInputError(f"{where}: assert must be a non-empty list of assertions")
        checked = [parse_assertion(a, f"{where}, assertion {i}") for i, a in enumerate(raw, 1)]
        if store is not None:
            for assertion in checked:
                if assertion.rubric is not None:
                    _check_rubric(store, assertion.rubric, where)
        reserved = {ASSERT_COLUMN, DESCRIPTION_COLUMN} & set(variables)
        if reserved:
            raise BadInputError(f"{where}: {', '.join(sorted(reserved))} cannot be a variable name")
        keys = sorted(variables)
        if names is None:
            names = keys
        elif keys != names:
            raise BadInputError(
                f"{where} has variables {', '.join(keys) or '(none)'}; case 1 has "
                f"{', '.join(names) or '(none)'} (every case needs the same ones)"
            )
        row = {k: _cell(v) for k, v in variables.items()}
        row[ASSERT_COLUMN] = raw
        row[DESCRIPTION_COLUMN] = str(case.get(DESCRIPTION_COLUMN) or f"case {number}")
        rows.append(row)
    return rows, names or []


def _cell(value: Any) -> Any:
    # Templates see text: nested values go in as JSON, as promptfoo renders them.
    return (
        value if isinstance(value, str | int | float | bool) or value is None else json.dumps(value)
    )


def _check_rubric(store: Store, ref: str, where: str) -> None:
    try:
        store.get_prompt_version(ref)
    except (StoreError, KeyError, ValueError):
        raise BadInputError(
            f"{where}: judge rubric {ref!r} is not in this workspace; add it with "
            "tunelab prompt new (see docs/judge.md)"
        ) from None


def add_cases_dataset(
    store: Store, path: Path, name: str, split: str = "test", replace: bool = False
) -> Dataset:
    """Read, check and store a test-case file as a dataset whose metrics are its assertions."""
    from tunelab.engine.data.importing import fingerprint_rows

    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", name):
        raise BadInputError(f"bad dataset name {name!r}: use letters, digits, '.', '_' or '-'")
    rows, names = case_rows(read_cases(path), store)
    fingerprint = fingerprint_rows(rows)
    new = NewDataset(
        name=name,
        source=f"{SOURCE_PREFIX}{path.resolve()}",
        fingerprint=fingerprint,
        splits=[NewSplit(split, rows, fingerprint)],
        task="generation",
        input_columns=names,
        reference_column=None,
        metrics=list(CASE_METRICS),
        card=f"{len(rows)} test cases with assertions, from {path.name}",
    )
    return store.add_dataset(new, replace=replace)
