"""Elapsed and remaining time of a training run, for progress bars and log lines.

The remaining time is estimated from the first logged window on: the steps done since the run (or
its resume) started, over the seconds they took (``seconds`` of each ``metrics.jsonl`` record), so
a resumed run does not count the steps it inherited as fast ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["TrainClock", "format_duration"]


def format_duration(seconds: float | None) -> str:
    """``1:02:03`` / ``2:03``; ``-:--`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "-:--"
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


@dataclass
class TrainClock:
    """Follows the trainer's ``start`` and ``log`` events.

    Attributes:
        total: the step training stops at.
        start_step: the step this process started (or resumed) from.
    """

    total: int = 0
    start_step: int = 0
    _t0: float = field(default_factory=time.perf_counter)
    _step: int = 0
    _seconds: float | None = None

    def start(self, step: int, total: int) -> None:
        """The trainer's ``start`` event."""
        self.start_step, self._step, self.total = int(step), int(step), int(total)
        self._t0, self._seconds = time.perf_counter(), None

    def log(self, step: int, seconds: float | None = None) -> None:
        """A logged window ending at ``step``, ``seconds`` after the start (default: measured here)."""
        self._step = int(step)
        self._seconds = float(seconds) if seconds is not None else time.perf_counter() - self._t0

    @property
    def elapsed(self) -> float:
        """Seconds since the start event."""
        return time.perf_counter() - self._t0

    @property
    def remaining(self) -> float | None:
        """Estimated seconds to ``total``; None before the first logged window."""
        done = self._step - self.start_step
        if self._seconds is None or done <= 0:
            return None
        return max(self.total - self._step, 0) * self._seconds / done

    def describe(self) -> str:
        """``elapsed 1:02, remaining 3:04``."""
        return f"elapsed {format_duration(self.elapsed)}, remaining {format_duration(self.remaining)}"
