"""GCRA (generic cell rate algorithm): one pure rate-limit calculator with the clock passed in.

The adapters' pacer uses `reserve` (wait for your slot); the sandbox vendors use `try_acquire`
(answer 429 when over). Same arithmetic on both sides, so a client pacing at a vendor's documented
rate never sees that vendor's 429.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Bucket:
    """One rate limit a vendor call books a slot in: `route` names an endpoint group, or KEY_ROUTE."""

    route: str
    rate: float  # requests per second, sustained
    burst: float = 1.0


KEY_ROUTE = "*"  # the bucket of a limit on the whole key


@dataclass(slots=True)
class Gcra:
    rate: float  # requests per second, sustained
    burst: float = 1.0  # requests that may go back to back
    _tat: float = field(default=0.0, init=False)  # theoretical arrival time

    @property
    def interval(self) -> float:
        return 1.0 / self.rate

    @property
    def _tolerance(self) -> float:
        return max(self.burst - 1.0, 0.0) * self.interval

    def reserve(self, now: float) -> float:
        """Book the next slot and return how long to wait before using it (0 if none)."""
        send_at = max(now, self._tat - self._tolerance)
        self._tat = max(self._tat, send_at) + self.interval
        return send_at - now

    def try_acquire(self, now: float) -> tuple[bool, float]:
        """(True, 0) if a request now conforms (and books it), else (False, seconds to wait)."""
        allow_at = self._tat - self._tolerance
        if now < allow_at:
            return False, allow_at - now
        self._tat = max(self._tat, now) + self.interval
        return True, 0.0
