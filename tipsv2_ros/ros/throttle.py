# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Rate-limited log lines, one budget per problem, so a bad stream cannot flood the log."""
import time


class Throttle:
    """Logs a message for ``key`` at most once per ``period`` seconds, counting the rest.

    Args:
        logger: an rclpy logger.
        period: seconds between two lines of one key.
    """

    def __init__(self, logger, period: float = 5.0):
        self._logger = logger
        self._period = period
        self._last = {}
        self._suppressed = {}

    def _emit(self, level, key: str, text: str) -> bool:
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
