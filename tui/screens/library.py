"""Models and Datasets: what the workspace holds, with lineage and row previews."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on, work
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Static

from tunelab.tui.messages import CatalogLoaded, DatasetPreviewLoaded
from tunelab.tui.screens.base import TunelabScreen
from tunelab.tui.widgets.nav_table import NavTable

if TYPE_CHECKING:
    from textual.app import ComposeResult

    from tunelab.store import Dataset, Model

PREVIEW_ROWS = 50


def lineage(model: Model, models: dict[int, Model], datasets: dict[int, Dataset]) -> str:
    """`tuned ← base` chains with how each step was made, newest first."""
    parts: list[str] = []
    current: Model | None = model
    seen: set[int] = set()
    while current is not None and current.id not in seen:
        seen.add(current.id)
        how = []
        if current.method:
            how.append(current.method)
        if current.training_dataset_id in datasets:
            how.append(f"on {datasets[current.training_dataset_id].name}")
        if current.job_id is not None:
            how.append(f"job {current.job_id}")
        if current.step is not None:
            how.append(f"step {current.step}")
        parts.append(current.name + (f" ({' '.join(how)})" if how else ""))
        current = models.get(current.base_model_id) if current.base_model_id else None
    return " ← ".join(parts)


class CatalogScreen(TunelabScreen):
    """Shared loading for the Models and Datasets screens."""

    CSS_PATH = "library.tcss"

    BINDINGS = [
        Binding("r", "refresh", "Refresh", id="library-refresh", tooltip="Reload the list"),
    ]

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.models: dict[int, Model] = {}
        self.datasets: dict[int, Dataset] = {}

    def on_mount(self) -> None:
        self.action_refresh()

    def action_refresh(self) -> None:
        self.load_catalog()

    def reload_data(self) -> None:
        self.load_catalog()

    @work(thread=True, exclusive=True, exit_on_error=False, group="store", description="Catalog")
    def load_catalog(self) -> None:
        self.post_message(CatalogLoaded(self.store.list_models(), self.store.list_datasets()))

    @on(CatalogLoaded)
    def catalog_loaded(self, event: CatalogLoaded) -> None:
        models = {m.id: m for m in event.models}
        datasets = {d.id: d for d in event.datasets}
        if (models, datasets) == (self.models, self.datasets) and (models or datasets):
            return  # unchanged: leave the tables (cursor, scroll, preview) alone
        self.models = {m.id: m for m in event.models}
        self.datasets = {d.id: d for d in event.datasets}
        self.show_catalog()

    def show_catalog(self) -> None:
        """Fill the screen's tables from `self.models` and `self.datasets`."""


class ModelsScreen(CatalogScreen):
    """Base models and fine-tuned artifacts, each with the chain it came from."""

    SCREEN_TITLE = "Models"

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        with Vertical(id="models"):
            yield NavTable(id="model-list")
            with VerticalScroll(id="model-detail", classes="pane"):
                yield Static("", id="model-lineage", markup=False)
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.query_one("#model-list", NavTable).add_columns(
            "Model", "Kind", "Source", "Method", "Trained on", "Best", "Metrics"
        )
        super().on_mount()

    def show_catalog(self) -> None:
        table = self.query_one("#model-list", NavTable)
        keep = table.selected_key()
        table.clear()
        for model in self.models.values():
            dataset = self.datasets.get(model.training_dataset_id or -1)
            metrics = " ".join(
                f"{k} {v:.3f}" for k, v in model.metrics.items() if isinstance(v, float)
            )
            table.add_row(
                model.name, model.kind, model.source, model.method or "—",
                dataset.name if dataset else "—", "★" if model.is_best else "", metrics,
                key=str(model.id),
            )  # fmt: skip
        table.move_to_key(keep)
        self.show_lineage()

    @on(DataTable.RowHighlighted, "#model-list")
    def show_lineage(self) -> None:
        key = self.query_one("#model-list", NavTable).selected_key()
        model = self.models.get(int(key)) if key else None
        text = ""
        if model is not None:
            text = f"Lineage: {lineage(model, self.models, self.datasets)}\nPath: {model.path}"
            if model.training_config:
                settings = ", ".join(f"{k}={v}" for k, v in sorted(model.training_config.items()))
                text += f"\nTraining: {settings}"
        self.query_one("#model-lineage", Static).update(text)


class DatasetsScreen(CatalogScreen):
    """Datasets with their splits, card and the first rows of a split."""

    SCREEN_TITLE = "Datasets"
    BINDINGS = [
        Binding("s", "next_split", "Split", id="datasets-split",
                tooltip="Preview the next split of the selected dataset"),
    ]  # fmt: skip

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.split_index = 0
        self.previewed: str | None = None

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        with Vertical(id="datasets"):
            yield NavTable(id="dataset-list")
            yield Static("", id="dataset-card", classes="hint", markup=False)
            yield NavTable(id="dataset-rows")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.query_one("#dataset-list", NavTable).add_columns(
            "Dataset", "Task", "Splits", "Inputs", "Reference", "Metrics"
        )
        super().on_mount()

    def show_catalog(self) -> None:
        table = self.query_one("#dataset-list", NavTable)
        keep = table.selected_key()
        table.clear()
        for dataset in self.datasets.values():
            splits = " ".join(f"{s.name}:{s.row_count}" for s in dataset.splits)
            table.add_row(
                dataset.name, dataset.task, splits, ", ".join(dataset.input_columns),
                dataset.reference_column or "—", ", ".join(dataset.metrics), key=str(dataset.id),
            )  # fmt: skip
        table.move_to_key(keep)
        self.preview_selected()

    def selected_dataset(self) -> Dataset | None:
        key = self.query_one("#dataset-list", NavTable).selected_key()
        return self.datasets.get(int(key)) if key else None

    @on(DataTable.RowHighlighted, "#dataset-list")
    def dataset_highlighted(self) -> None:
        key = self.query_one("#dataset-list", NavTable).selected_key()
        if key == self.previewed:
            return  # the same dataset after a reload: keep its split
        self.previewed = key
        self.split_index = 0
        self.preview_selected()

    def preview_selected(self) -> None:
        dataset = self.selected_dataset()
        if dataset is None or not dataset.splits:
            return
        split = dataset.splits[self.split_index % len(dataset.splits)]
        card = " ".join(dataset.card.split())[:200]
        self.query_one("#dataset-card", Static).update(
            f"{dataset.name}/{split.name} · {split.row_count} rows · {dataset.source}"
            + (f"\n{card}" if card else "")
        )
        self.load_preview(dataset.name, split.name)

    def action_next_split(self) -> None:
        self.split_index += 1
        self.preview_selected()

    @work(thread=True, exclusive=True, exit_on_error=False, group="preview", description="Rows")
    def load_preview(self, dataset: str, split: str) -> None:
        rows = self.store.dataset_rows(dataset, split, limit=PREVIEW_ROWS)
        self.post_message(DatasetPreviewLoaded(dataset, split, [r.data for r in rows]))

    @on(DatasetPreviewLoaded)
    def preview_loaded(self, event: DatasetPreviewLoaded) -> None:
        table = self.query_one("#dataset-rows", NavTable)
        table.clear(columns=True)
        columns = list(dict.fromkeys(k for row in event.rows for k in row))
        table.add_columns("#", *columns)
        for index, row in enumerate(event.rows):
            cells = [" ".join(str(row.get(c, "")).split())[:60] for c in columns]
            table.add_row(str(index), *cells)
