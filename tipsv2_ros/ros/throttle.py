# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Rate-limited log lines, one budget per problem, so a bad stream cannot flood the log."""
import time

# Keys are built from problem descriptions (e.g. one per kind of bad frame), so a stream that
# varies its defect could otherwise create keys without end: past this many, new problems
# share one budget and the dictionaries stop growing.
MAX_KEYS = 256
OVERFLOW_KEY = '(other problems)'


class Throttle:
    """Logs a message for ``key`` at most once per ``period`` seconds, counting the rest.

    Args:
        logger: an rclpy logger.
        period: seconds between two lines of one key.
        max_keys: the most distinct keys tracked; later new keys share one budget.
    """

    def __init__(self, logger, period: float = 5.0, max_keys: int = MAX_KEYS):
        self._logger = logger
        self._period = period
        self._max_keys = max_keys
        self._last = {}
        self._suppressed = {}

    def _emit(self, level, key: str, text: str) -> bool:
        if key not in self._last and len(self._last) >= self._max_keys:
            key = OVERFLOW_KEY
        now = time.monotonic()
        if now - self._last.get(key, -self._period) < self._period:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        skipped = self._suppressed.pop(key, 0)
        if skipped:
            text += f' ({skipped} more like this since the last message)'
        self._last[key] = now
        level(text)
        return True

    def warn(self, key: str, text: str) -> bool:
        return self._emit(self._logger.warning, key, text)

    def error(self, key: str, text: str) -> bool:
        return self._emit(self._logger.error, key, text)
