"""The workers of a study: who runs a trial, whether it still lives, what it did."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState


def worker_identity() -> dict[str, Any]:
    """This process as recorded on its trials: host, boot id, pid, process start time."""
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "boot": _boot_id(),
        "pid": pid,
        "start": _start_ticks(pid),
    }


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to tell pid reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def worker_alive(worker: dict[str, Any]) -> bool | None:
    """Whether a recorded worker process still runs; ``None`` when it is on another machine."""
    me = worker_identity()
    if worker.get("host") != me["host"] or worker.get("boot", "") != me["boot"]:
        return None
    pid = int(worker.get("pid", 0))
    if pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    recorded, now = worker.get("start"), _start_ticks(pid)
    return not (recorded is not None and now is not None and recorded != now)


@dataclass
class TrialOutcome:
    """What one call of the objective did in this worker."""

    number: int
    state: str  # complete, pruned, failed, surplus
    value: float | None = None
    error: str = ""
    seconds: float = 0.0
    profile: str | None = None
    """The profile the trial drew, in a study with profiles."""

    @property
    def name(self) -> str:
        """How the trial is named in the log: ``trial 3``, or ``trial 3 (cnn)``."""
        return f"trial {self.number}" + (f" ({self.profile})" if self.profile else "")


@dataclass
class WorkerReport:
    """What a worker did: its trials, and the study's counts when it stopped."""

    study_name: str
    storage: str
    trials: list[TrialOutcome] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    stopped_by: str = ""

    def numbers(self, state: str | None = None) -> list[int]:
        """Trial numbers this worker ran (optionally of one state), surplus ones excluded."""
        return [
            t.number
            for t in self.trials
            if t.state != "surplus" and (state is None or t.state == state)
        ]


STATE_NAMES = {
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.RUNNING: "running",
    TrialState.FAIL: "failed",
    TrialState.WAITING: "waiting",
}
"""The word for each Optuna trial state, as the leaderboard and the live view say it."""


def state_name(state: TrialState) -> str:
    """The word for an Optuna trial state (``waiting`` for one not listed)."""
    return STATE_NAMES.get(state, "waiting")


def trial_counts(trials: Sequence[FrozenTrial]) -> dict[str, int]:
    """Trials by state: complete, pruned, running, failed, waiting."""
    counts = dict.fromkeys(STATE_NAMES.values(), 0)
    for t in trials:
        counts[state_name(t.state)] += 1
    return counts
