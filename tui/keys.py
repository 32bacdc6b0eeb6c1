"""Every class that declares key bindings, so docs and tests can list all binding ids."""

from __future__ import annotations

from textual.binding import Binding
from textual.dom import DOMNode


def binding_classes(app_class: type[DOMNode]) -> list[type[DOMNode]]:
    """The app class (passed in: this module is imported by the app) and every screen,
    modal and widget class that declares bindings."""
    from tunelab.tui.screens.base import TunelabScreen
    from tunelab.tui.screens.blind_ab import BlindABModal
    from tunelab.tui.screens.compare import CompareScreen
    from tunelab.tui.screens.confirm import ConfirmModal, UnsavedEditsModal
    from tunelab.tui.screens.correction import CorrectionModal
    from tunelab.tui.screens.detail import DetailModal
    from tunelab.tui.screens.eval_modal import EvalModal
    from tunelab.tui.screens.finetune import FinetuneScreen
    from tunelab.tui.screens.help import HelpModal
    from tunelab.tui.screens.home import HomeScreen
    from tunelab.tui.screens.library import CatalogScreen, DatasetsScreen
    from tunelab.tui.screens.modals import AskTextModal, TextViewModal
    from tunelab.tui.screens.optimize import OptimizeModal, SearchModal
    from tunelab.tui.screens.playground import PlaygroundScreen
    from tunelab.tui.screens.prompts import PromptsScreen
    from tunelab.tui.screens.report import ReportScreen
    from tunelab.tui.screens.run_detail import RunDetailModal
    from tunelab.tui.screens.runs import RunsScreen
    from tunelab.tui.screens.stability import StabilityModal
    from tunelab.tui.screens.sweeps import SweepsModal
    from tunelab.tui.screens.trend import TrendModal
    from tunelab.tui.widgets.nav_table import NavTable
    from tunelab.tui.widgets.outputs_table import OutputsTable

    return [
        app_class, TunelabScreen, HomeScreen, PromptsScreen, PlaygroundScreen, RunsScreen,
        CompareScreen, FinetuneScreen, CatalogScreen, DatasetsScreen, NavTable, OutputsTable,
        ReportScreen,
        HelpModal, AskTextModal, TextViewModal, EvalModal, ConfirmModal, CorrectionModal,
        StabilityModal,
        SweepsModal, OptimizeModal, SearchModal, DetailModal, RunDetailModal,
        UnsavedEditsModal,
        BlindABModal, TrendModal,
    ]  # fmt: skip


def all_bindings(app_class: type[DOMNode]) -> list[tuple[str, Binding]]:
    """(class name, binding) for every binding tunelab declares (not Textual's own)."""
    out: list[tuple[str, Binding]] = []
    for cls in binding_classes(app_class):
        for binding in cls.__dict__.get("BINDINGS", []):
            if isinstance(binding, Binding):
                out.append((cls.__name__, binding))
    return out
