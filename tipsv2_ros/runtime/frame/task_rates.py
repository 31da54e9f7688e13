# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Per-task rate limits: which tasks a frame runs, so the robot spends its budget where needed.

Each task has a most-frequent rate in Hz (0 = every frame). A frame runs the tasks that are
due; the encoder runs once for all of them (one backend call), so tasks that coincide share
it, and a frame with no task due is skipped before any inference.
"""
from typing import Dict, FrozenSet, Iterable, Mapping


class TaskRates:
    """Remembers when each task last ran and says which are due."""

    def __init__(self) -> None:
        self._next: Dict[str, float] = {}

    def due(self, wanted: Iterable[str], rates: Mapping[str, float], now: float
            ) -> FrozenSet[str]:
        """Return the tasks of ``wanted`` due at ``now`` (seconds, a monotonic clock).

        Args:
            wanted: the tasks someone subscribes to.
            rates: task -> most runs per second; 0 (or missing) means every frame.
            now: the frame's time.
        """
        return frozenset(task for task in wanted
                         if rates.get(task, 0.0) <= 0.0 or now >= self._next.get(task, 0.0))

    def ran(self, tasks: Iterable[str], rates: Mapping[str, float], now: float) -> None:
        """Record that ``tasks`` ran for the frame at ``now``."""
        for task in tasks:
            rate = rates.get(task, 0.0)
            if rate > 0.0:
                # From the previous due time when on schedule, so a task at 2 Hz on a
                # 30 Hz camera runs 2 times a second, not every 0.5 s + a frame.
                previous = self._next.get(task, now)
                start = previous if now - previous < 1.0 / rate else now
                self._next[task] = start + 1.0 / rate
