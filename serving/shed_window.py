"""Whether this worker is shedding: the surge options (serving.settings: model calls off the event loop, loop
turns, a short GIL switch interval) cost latency and CPU below saturation and pay only while admission control
turns requests away, so `NEWSREC_OFF_LOOP_WHEN=shedding` applies them from a shed until `hold_s` after the last.
"""
from __future__ import annotations

import sys
import time

HOLD_S = 2.0


class ShedWindow:
    def __init__(self, always: bool = False, switch_interval_ms: float | None = None, hold_s: float = HOLD_S,
                 clock=time.monotonic) -> None:
        self.always, self.hold_s, self.clock = always, hold_s, clock
        self._switch_s = switch_interval_ms / 1e3 if switch_interval_ms is not None else None
        self._default_switch_s = sys.getswitchinterval()
        self._last_shed = -float("inf")
        self._on = False
        if always:
            self._set(True)

    def shed(self) -> None:
        """Admission control turned a request away (any gate)."""
        self._last_shed = self.clock()
        if not self._on:
            self._set(True)

    def __call__(self) -> bool:
        """Apply the surge options now?"""
        if self._on and not self.always and self.clock() - self._last_shed > self.hold_s:
            self._set(False)
        return self._on

    def _set(self, on: bool) -> None:
        self._on = on
        if self._switch_s is not None:
            sys.setswitchinterval(self._switch_s if on else self._default_switch_s)
