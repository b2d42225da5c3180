"""What a skipped step replays, per branch: MagCache's reuse of the last computed residual, or a damped
first-order forecast from the branch's last two computed residuals.

With `r_c` the residual computed at step `c` and `r_p` the one computed before it at step `p < c`, a skipped
step `t > c` replays

    r̂_t = r_c + A · (t − c) / (c − p) · (r_c − r_p)

`A = 0` is MagCache's reuse (exactly: nothing else is held or computed); `A = 1` extrapolates the last two
computed residuals linearly; values in between damp the step. With one computed residual so far, the replay is
that residual (reuse). Each branch key has its own history, emptied with `clear()` at every pipeline call.

Held between calls per branch: `r_c`, plus `r_c − r_p` when `A > 0` — one residual more, never two.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from magcache_cli.types import FORECAST_RANGE


def forecast_weight(forecast: float, t: int, c: int, p: int) -> float:
    """The factor of `(r_c − r_p)` in the forecast at step `t`: `A · (t − c) / (c − p)`."""
    return forecast * (t - c) / (c - p)


@dataclass
class History:
    """One branch's computed residuals: the last one (`last`, step `step`) and, with a forecast, its difference
    to the one before (`delta` = r_c − r_p, computed at `prev_step`)."""

    last: torch.Tensor
    step: int
    delta: torch.Tensor | None = None
    prev_step: int | None = None


class ResidualCache:
    """Per-branch residual histories of one denoiser, and what a skipped step replays from them."""

    def __init__(self, forecast: float = 0.0):
        if forecast not in FORECAST_RANGE:
            raise ValueError(f"forecast must be in {FORECAST_RANGE}, got {forecast!r}")
        self.forecast = float(forecast)
        self._histories: dict[str, History] = {}

    def clear(self) -> None:
        self._histories = {}

    def last(self, key: str) -> torch.Tensor | None:
        h = self._histories.get(key)
        return None if h is None else h.last

    def begin_compute(self, key: str) -> None:
        """A computed call of `key` starts: drop what its new residual will replace, so that a branch never
        holds more than its one (reuse) or two (forecast) residuals, even while the call runs."""
        h = self._histories.get(key)
        if h is None:
            return
        if self.forecast == 0:
            del self._histories[key]
        else:
            h.delta = None  # `last` stays: it becomes r_p of the new difference

    def store(self, key: str, residual: torch.Tensor, step: int) -> None:
        """The residual computed for `key` at `step`."""
        h = self._histories.get(key)
        if self.forecast > 0 and h is not None and h.last.shape == residual.shape and h.step < step:
            self._histories[key] = History(residual, step, residual - h.last, h.step)
        else:
            self._histories[key] = History(residual, step)

    def replay(self, key: str, step: int) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        """`(r_c, r_c − r_p, weight)` for a skipped call of `key` at `step`; `(r_c, None, 0.0)` when there is
        nothing to forecast from (`A = 0`, or one computed residual so far)."""
        h = self._histories[key]
        if h.delta is None:
            return h.last, None, 0.0
        return h.last, h.delta, forecast_weight(self.forecast, step, h.step, h.prev_step)

    def held_bytes(self) -> dict[str, int]:
        """Bytes of the tensors held per branch key."""
        return {key: sum(t.numel() * t.element_size() for t in (h.last, h.delta) if t is not None)
                for key, h in self._histories.items()}
