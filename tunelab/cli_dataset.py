"""`tunelab dataset add|list|show`: datasets from JSONL, CSV or Parquet files."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from tunelab.cli_common import console, emit_json, fail, state
from tunelab.store import Dataset, NewDataset

dataset_app = typer.Typer(help="Add and inspect datasets.", no_args_is_help=True)


def _split_list(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def _check_metrics(new: NewDataset) -> None:
    """Refuse metrics an evaluation of this dataset would refuse, before anything is stored."""
    from tunelab.engine.evaluation.answers import parse_rule
    from tunelab.engine.evaluation.metrics import resolve_metrics

    if new.answer_rule is not None:
        parse_rule(new.answer_rule)
    resolve_metrics(new.metrics, new.task, new.labels, new.reference_column is not None)


def _summary(dataset: Dataset) -> dict[str, object]:
    return {
        "name": dataset.name,
        "task": dataset.task,
        "splits": {s.name: s.row_count for s in dataset.splits},
        "input_columns": dataset.input_columns,
        "reference_column": dataset.reference_column,
        "labels": dataset.labels,
        "metrics": dataset.metrics,
        "answer_rule": dataset.answer_rule,
        "fingerprint": dataset.fingerprint,
        "source": dataset.source,
        "created_at": dataset.created_at,
    }


@dataset_app.command("add")
def dataset_add(
    paths: list[str] = typer.Argument(..., help="Data files (.jsonl, .csv, .parquet) or a hub id."),
    name: str = typer.Option(..., "--name", "-n", help="Dataset name."),
    split: str | None = typer.Option(None, "--split", help="Split name for a single file."),
    input_columns: str | None = typer.Option(
        None, "--input", help="Input columns, comma-separated."
    ),
    reference: str | None = typer.Option(None, "--reference", help="Reference (or label) column."),
    labels: str | None = typer.Option(None, "--labels", help="Label set, comma-separated."),
    task: str | None = typer.Option(None, "--task", help="classification or generation."),
    metrics: str | None = typer.Option(None, "--metrics", help="Default metrics, comma-separated."),
    answer_rule: str | None = typer.Option(
        None,
        "--answer-rule",
        help="How to read the final answer out of a reference: gsm8k, marker, answer-line, "
        "answer-is, boxed, last-number or regex:PATTERN with one group (default: gsm8k when "
        "every reference ends in '#### N', else none).",
    ),
    replace: bool = typer.Option(False, "--replace", help="Replace a dataset of the same name."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Add a dataset; splits come from file names (train/validation/test) or --split.

    A YAML file (or a JSONL file whose lines have vars and assert) is a test-case file:
    each case's variables and assertions, scored by the assertions (docs/assertions.md).
    """
    from tunelab.engine.data.cases import add_cases_dataset, looks_like_cases
    from tunelab.engine.data.importing import DatasetOptions, add_dataset

    if len(paths) == 1 and looks_like_cases(Path(paths[0]).expanduser()):
        if input_columns or reference or labels or task or metrics or answer_rule:
            fail("a test-case file sets its own columns and metrics; drop --input, --reference, "
                 "--labels, --task, --metrics and --answer-rule")  # fmt: skip
        cases = add_cases_dataset(
            state.store(), Path(paths[0]).expanduser(), name, split or "test", replace=replace
        )
        if json_output:
            emit_json(_summary(cases))
            return
        rows = cases.splits[0].row_count
        console.print(
            f"Added test cases {cases.name!r}: {rows} cases in split {cases.splits[0].name}; "
            f"variables {', '.join(cases.input_columns) or '(none)'}; scored by their assertions"
        )
        return

    options = DatasetOptions(
        name=name,
        split=split,
        input_columns=_split_list(input_columns),
        reference_column=reference,
        labels=_split_list(labels),
        task=task,
        metrics=_split_list(metrics),
        answer_rule=answer_rule.strip() if answer_rule and answer_rule.strip() else None,
    )
    dataset = add_dataset(
        state.store(),
        paths,
        options,
        cache_dir=state.workspace().cache_dir / "datasets",
        replace=replace,
        check=_check_metrics,
    )
    if json_output:
        emit_json(_summary(dataset))
        return
    splits = ", ".join(f"{s.name} ({s.row_count} rows)" for s in dataset.splits)
    console.print(f"Added dataset {dataset.name!r}: {dataset.task}; splits {splits}")
    if dataset.labels:
        console.print(f"  labels: {', '.join(dataset.labels)} (column {dataset.reference_column})")
    console.print(f"  inputs: {', '.join(dataset.input_columns)}")
    if dataset.answer_rule:
        console.print(
            f"  final answers: rule {dataset.answer_rule!r} reads column "
            f"{dataset.reference_column}; metrics {', '.join(dataset.metrics)}"
        )


@dataset_app.command("list")
def dataset_list(json_output: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List datasets with their splits."""
    datasets = state.store().list_datasets()
    if json_output:
        emit_json([_summary(d) for d in datasets])
        return
    table = Table("dataset", "task", "splits", "labels", "fingerprint")
    for d in datasets:
        table.add_row(
            d.name,
            d.task,
            ", ".join(f"{s.name}:{s.row_count}" for s in d.splits),
            ", ".join(d.labels),
            d.fingerprint,
        )
    console.print(table)


@dataset_app.command("show")
def dataset_show(
    name: str = typer.Argument(..., help="Dataset name."),
    split: str | None = typer.Option(None, "--split", help="Split to preview (default: first)."),
    rows: int = typer.Option(5, "--rows", help="How many rows to preview."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a dataset's column roles, splits and a preview of rows."""
    store = state.store()
    dataset = store.get_dataset(name)
    split_name = split or dataset.splits[0].name
    dataset.split(split_name)
    preview = store.dataset_rows(name, split_name, limit=rows)
    lineage = store.dataset_lineage(dataset.id)  # None unless `tunelab export` made it
    if json_output:
        emit_json(
            {**_summary(dataset), "lineage": lineage, "preview_split": split_name,
             "preview": [r.data for r in preview]}
        )  # fmt: skip
        return
    summary = _summary(dataset)
    for key, value in summary.items():
        console.print(Text(f"{key}: {value}"))
    if lineage is not None:
        from tunelab.cli_feedback import lineage_line

        console.print(Text(f"made from: {lineage_line(lineage)}"))
    if preview:
        columns = list(preview[0].data.keys())
        table = Table("#", *columns, title=f"{split_name}: first {len(preview)} rows")
        for r in preview:
            table.add_row(str(r.idx), *(Text(str(r.data.get(c, ""))[:80]) for c in columns))
        console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(dataset_app, name="dataset")
