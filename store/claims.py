"""Claiming an evaluation run for one process, atomically, so two resumes never both proceed."""

from __future__ import annotations

from collections.abc import Callable

from .errors import RunClaimedError
from .records import Run
from .runs import RunStore, _this_process


class RunClaimStore(RunStore):
    def claim_run(self, run_id: int, seen: Run, owner_alive: Callable[[Run], bool | None]) -> Run:
        """Record this process as the run's owner unless a live process already holds it.

        The read and the conditional UPDATE share one BEGIN IMMEDIATE transaction, so of two
        processes claiming at the same moment exactly one wins.

        Args:
            seen: the run as the caller read it before deciding to claim; it names the
                holder in the loser's message ("still running" if it was running then,
                "already being resumed" if another process claimed it since).
            owner_alive: whether a run's recorded process is alive (None: cannot tell, which
                lets a run from another host or an old schema be taken over, as before).

        Returns:
            the run as it was before the claim (for `release_run_claim`).

        Raises:
            RunClaimedError: a live process holds the run.
        """
        me = _this_process()
        with self._write() as db:
            before = self.get_run(run_id)
            if before.status == "running" and owner_alive(before) is True:
                if seen.status == "running" and seen.pid == before.pid:
                    raise RunClaimedError(
                        f"run {run_id} is still running in process {before.pid} on "
                        f"{before.host}; let it finish or stop it (Ctrl-C), then "
                        f"`tunelab eval --resume {run_id}`"
                    )
                raise RunClaimedError(
                    f"run {run_id} is already being resumed by pid {before.pid}; let it finish "
                    f"or stop it (Ctrl-C), then `tunelab eval --resume {run_id}` if rows are left"
                )
            cursor = db.execute(
                "UPDATE runs SET status = 'running', error = NULL, finished_at = NULL, pid = ?, "
                "host = ?, pid_start = ? WHERE id = ? AND status = ? AND pid IS ? "
                "AND pid_start IS ?",
                [me["pid"], me["host"], me["pid_start"], run_id, before.status, before.pid,
                 before.pid_start],
            )  # fmt: skip
            if cursor.rowcount != 1:  # cannot happen under the write lock; never proceed blind
                raise RunClaimedError(f"run {run_id} changed while it was being claimed; retry")
        return before

    def release_run_claim(self, run_id: int, before: Run) -> None:
        """Undo `claim_run` when the resume stopped before it started work (a bad model, a
        changed prompt): the run gets back its status and error, if this process still holds it."""
        me = _this_process()
        with self._write() as db:
            db.execute(
                "UPDATE runs SET status = ?, error = ?, finished_at = ? "
                "WHERE id = ? AND status = 'running' AND pid = ? AND host = ?",
                [before.status, before.error, before.finished_at, run_id, me["pid"], me["host"]],
            )
