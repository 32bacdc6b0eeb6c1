"""Blind A/B: two runs' outputs of one row side by side, sides shuffled, runs hidden until judged.

The session (order and sides, from a seed) comes from the engine; each judgement is stored
through the same engine call as `tunelab run prefer`, with the left output as A, so the store
records where each run was shown. Which run was on which side shows only after the judgement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual import on, work
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Footer, Static
from textual.worker import Worker, WorkerState

if TYPE_CHECKING:
    from textual.app import ComposeResult

    from tunelab.engine.api.facade import EngineProtocol
    from tunelab.engine.api.types import BlindPair, BlindSession


@dataclass
class PreferencesTallied(Message):
    """The blind A/B win rates of compared runs were read (one line per judged pair)."""

    run_ids: list[int]
    lines: list[str]


VERDICTS = {"left": "left better", "right": "right better", "tie": "a tie"}


class BlindABModal(ModalScreen[int]):
    """Judge two runs' outputs without knowing which is which; dismisses with how many were
    stored, so the Compare screen can refresh its win-rate line."""

    CSS_PATH = "blind_ab.tcss"
    BINDINGS = [
        Binding("left,h", "judge('left')", "Left better", id="ab-left",
                tooltip="The left output is better (stored, then the runs are revealed)"),
        Binding("right,l", "judge('right')", "Right better", id="ab-right",
                tooltip="The right output is better (stored, then the runs are revealed)"),
        Binding("t,equals_sign", "judge('tie')", "Tie", id="ab-tie",
                tooltip="Neither output is better (stored as a tie)"),
        Binding("s,space", "skip", "Skip", id="ab-skip",
                tooltip="Skip this row without storing a judgement"),
        Binding("escape,q", "close", "Close", id="ab-close", tooltip="Close blind A/B"),
    ]  # fmt: skip

    @dataclass
    class SessionLoaded(Message):
        """The rows to judge arrived, in their seeded order with their seeded sides."""

        session: BlindSession

    @dataclass
    class PairJudged(Message):
        """A judgement of one pair was stored."""

        pair: BlindPair
        side: str

    def __init__(self, engine: EngineProtocol, run_a: int, run_b: int, seed: int) -> None:
        super().__init__()
        self.engine = engine
        self.run_ids = (run_a, run_b)
        self.seed = seed
        self.session: BlindSession | None = None
        self.position = 0
        """Index in the session's pairs of the row on show."""
        self.stored = 0
        self.busy = False
        """A judgement is being stored: further keys wait for it."""

    def compose(self) -> ComposeResult:
        with Vertical(id="ab-box"):
            yield Static("Loading the rows…", id="ab-title", markup=False)
            yield Static("", id="ab-input", markup=False)
            with Horizontal(id="ab-sides"):
                with Vertical(classes="ab-side"):
                    yield Static("Left", classes="ab-side-title")
                    yield Static("", id="ab-left-text", markup=False)
                with Vertical(classes="ab-side"):
                    yield Static("Right", classes="ab-side-title")
                    yield Static("", id="ab-right-text", markup=False)
            yield Static("", id="ab-reveal", markup=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.load_session(*self.run_ids, self.seed)

    @property
    def pair(self) -> BlindPair | None:
        """The pair on show, or None when none is left."""
        if self.session is None or self.position >= len(self.session.pairs):
            return None
        return self.session.pairs[self.position]

    @work(thread=True, exclusive=True, exit_on_error=False, group="ab", description="Blind A/B")
    def load_session(self, run_a: int, run_b: int, seed: int) -> None:
        self.post_message(self.SessionLoaded(self.engine.blind_session(run_a, run_b, seed)))

    @on(SessionLoaded)
    def session_loaded(self, event: SessionLoaded) -> None:
        self.session = event.session
        self.position = 0
        self.show_pair()

    def show_pair(self) -> None:
        session = self.session
        if session is None:
            return
        pair = self.pair
        total = len(session.pairs)
        if pair is None:
            done = session.already_judged + self.stored
            self.query_one("#ab-title", Static).update(
                f"Blind A/B · nothing left to judge: {done} shared rows judged by "
                f"{session.author} · Escape closes"
            )
            for selector in ("#ab-input", "#ab-left-text", "#ab-right-text"):
                self.query_one(selector, Static).update("")
            return
        self.query_one("#ab-title", Static).update(
            f"Blind A/B · row {self.position + 1} of {total} · seed {session.seed} · "
            f"judging as {session.author} · which output is better?"
        )
        self.query_one("#ab-input", Static).update(f"Row {pair.row_idx}\n{pair.input_text}")
        self.query_one("#ab-left-text", Static).update(pair.left_text or "(empty output)")
        self.query_one("#ab-right-text", Static).update(pair.right_text or "(empty output)")

    def action_judge(self, side: str) -> None:
        pair = self.pair
        if pair is None or self.busy:
            return
        self.busy = True
        self.store_judgement(pair, side)

    @work(thread=True, exclusive=False, exit_on_error=False, group="ab-store",
          description="Preference")  # fmt: skip
    def store_judgement(self, pair: BlindPair, side: str) -> None:
        self.engine.prefer_pair(pair, side)
        self.post_message(self.PairJudged(pair, side))

    @on(PairJudged)
    def pair_judged(self, event: PairJudged) -> None:
        self.busy = False
        self.stored += 1
        labels = self.session.labels if self.session is not None else {}
        left = labels.get(event.pair.left_run_id, f"run {event.pair.left_run_id}")
        right = labels.get(event.pair.right_run_id, f"run {event.pair.right_run_id}")
        self.query_one("#ab-reveal", Static).update(
            f"Row {event.pair.row_idx}: {VERDICTS[event.side]} · left was {left}, right was {right}"
        )
        self.position += 1
        self.show_pair()

    def action_skip(self) -> None:
        pair = self.pair
        if pair is None or self.busy:
            return
        self.query_one("#ab-reveal", Static).update(f"Row {pair.row_idx} skipped (not stored)")
        self.position += 1
        self.show_pair()

    @on(Worker.StateChanged)
    def worker_failed(self, event: Worker.StateChanged) -> None:
        """A store error says why; a session that could not load closes."""
        if event.state is WorkerState.ERROR and event.worker.error is not None:
            self.busy = False
            self.notify(str(event.worker.error), title="Blind A/B", severity="error", timeout=8)
            if self.session is None:
                self.dismiss(self.stored)

    def action_close(self) -> None:
        self.dismiss(self.stored)
