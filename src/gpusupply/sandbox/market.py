"""Moving prices for the simulated vendors: a seeded, bounded random walk with a daily cycle, and
offers that come and go. Every vendor sandbox shares this; each applies it to its own inventory
(`VendorSandbox.reprice`).

All of it is a pure function of (seed, vendor, key, time), so the same seed and the same clock give
the same prices in any process, after any restart, whatever was asked before:

- The walk is a mean-reverting random walk (a discrete Ornstein-Uhlenbeck, i.e. AR(1)) over steps
  of `STEP_SECONDS`: x_k = DECAY * x_(k-1) + u_k with u_k uniform in [-1, 1] drawn from a hash,
  truncated to the last `MEMORY_STEPS` steps so it needs no history. `tanh` bounds it, so a price
  never leaves base * (1 ± WALK_AMPLITUDE ± DAILY_AMPLITUDE).
- The daily cycle is a sine over the UTC day with a per-key phase (busy hours cost more somewhere).
- An offer is withdrawn (sold out, host offline) for a whole `CHURN_WINDOW_SECONDS` window with
  probability `CHURN_SHARE`, drawn per (offer key, window).

Off by default (`SandboxConfig.prices_move`), so tests that pin prices keep them; `gpusupply serve`
with in-process sandboxes turns it on (`GPUSUPPLY_SANDBOX_PRICES_MOVE`), and so does
`gpusupply sandbox --prices-move`.
"""

from __future__ import annotations

import hashlib
import math

STEP_SECONDS = 60.0
MEMORY_STEPS = 48
DECAY = 0.92
WALK_AMPLITUDE = 0.18
DAILY_AMPLITUDE = 0.06
DAY_SECONDS = 86_400.0
CHURN_WINDOW_SECONDS = 900.0
CHURN_SHARE = 0.15
# The largest factor the walk can reach either way: base * (1 ± MAX_SWING).
MAX_SWING = WALK_AMPLITUDE + DAILY_AMPLITUDE


def hash_unit(*parts: object) -> float:
    """A uniform number in [0, 1) from a hash of `parts`: the same parts give the same number."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class MarketWalk:
    """The price factor and the listing of every key (a GPU model, an offer) of one vendor."""

    def __init__(self, seed: int, vendor: str):
        self.seed = seed
        self.vendor = vendor
        self._walk: dict[str, tuple[int, float]] = {}  # key -> (step, walk value): the last one computed

    def step(self, now: float) -> int:
        return math.floor(now / STEP_SECONDS)

    def window(self, now: float) -> int:
        return math.floor(now / CHURN_WINDOW_SECONDS)

    def _shock(self, key: str, step: int) -> float:
        return 2.0 * hash_unit(self.seed, self.vendor, key, step) - 1.0

    def _walk_at(self, key: str, step: int) -> float:
        cached = self._walk.get(key)
        if cached is not None and cached[0] == step:
            return cached[1]
        if cached is not None and cached[0] == step - 1:
            # One step on: add the new shock, drop the one that leaves the memory.
            value = DECAY * cached[1] + self._shock(key, step) - DECAY**MEMORY_STEPS * self._shock(key, step - MEMORY_STEPS)
        else:
            value = sum(DECAY**j * self._shock(key, step - j) for j in range(MEMORY_STEPS))
        self._walk[key] = (step, value)
        return value

    def factor(self, key: str, now: float) -> float:
        """What the base price of `key` is multiplied by at `now`: within 1 ± MAX_SWING."""
        walk = WALK_AMPLITUDE * math.tanh(self._walk_at(key, self.step(now)) / 2.0)
        phase = 2.0 * math.pi * hash_unit(self.seed, self.vendor, key, "phase")
        daily = DAILY_AMPLITUDE * math.sin(2.0 * math.pi * (now % DAY_SECONDS) / DAY_SECONDS + phase)
        return 1.0 + walk + daily

    def listed(self, key: str, now: float) -> bool:
        """Whether the offer `key` is on the market at `now` (withdrawn for whole windows)."""
        return hash_unit(self.seed, self.vendor, key, "churn", self.window(now)) >= CHURN_SHARE

    def state_key(self, now: float) -> tuple[int, int]:
        """Changes exactly when prices or listings may change: a sandbox reprices only then."""
        return self.step(now), self.window(now)
