"""The status line: the workspace (elided in the middle) and what runs in any session."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.reactive import reactive
from textual.widgets import Static

if TYPE_CHECKING:
    from tunelab.engine.api.types import Activity


def elide_middle(text: str, width: int) -> str:
    """`text` cut to `width` characters by dropping its middle, so both ends stay readable."""
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head) :]


def activity_text(activity: Activity | None) -> str:
    """'2 evaluations · 1 job running · 1 queued' in any session; 'nothing running'."""
    if activity is None:
        return ""
    parts = []
    if activity.evaluations:
        parts.append(f"{activity.evaluations} eval{'s' if activity.evaluations != 1 else ''}")
    if activity.jobs_running:
        parts.append(f"{activity.jobs_running} job{'s' if activity.jobs_running != 1 else ''}")
    if activity.jobs_queued:
        parts.append(f"{activity.jobs_queued} queued")
    if activity.searches:
        parts.append(f"{activity.searches} search{'es' if activity.searches != 1 else ''}")
    if activity.sweeps:
        parts.append(f"{activity.sweeps} sweep{'s' if activity.sweeps != 1 else ''}")
    return (" · ".join(parts) + " running") if parts else "nothing running"


class StatusLine(Static):
    """Right of the tab bar; the app sets `workspace` and `activity` (attributes down)."""

    DEFAULT_CSS = """
    StatusLine {
        height: 1;
        width: 1fr;
        padding: 0 1;
        text-align: right;
        background: $panel;
        color: $text-muted;
        &.-busy {
            color: $text-warning;
        }
    }
    """

    workspace: reactive[str] = reactive("")
    """The workspace folder, shown elided in the middle to leave room for the activity."""
    activity: reactive[Activity | None] = reactive(None)
    """What runs now, in any session (counted from the store)."""

    def render(self) -> str:
        running = activity_text(self.activity)
        # What runs matters most; the workspace gets what is left, elided in the middle.
        room = self.size.width - 2 - len(running) - 3
        if room < 6:
            return running
        return f"{elide_middle(self.workspace, room)} · {running}" if running else self.workspace

    def watch_activity(self, activity: Activity | None) -> None:
        self.set_class(activity is not None and activity.total > 0, "-busy")

    def on_resize(self) -> None:
        self.refresh()  # what fits depends on the width
