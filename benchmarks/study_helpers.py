"""Helpers only the quality study uses (kept out of the installed package)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from magcache_cli.errors import MagCacheError
from magcache_cli.profile.schema import Profile
from magcache_cli.quality.tune import Point


def shared_curve_profile(profile: Profile, source: str = "cond") -> Profile:
    """The profile with `source`'s curve used for every branch (what diffusers' hook does with one list)."""
    if source not in profile.branches:
        raise MagCacheError(f"the profile has no {source!r} branch (branches: {', '.join(profile.branches)})")
    curve = profile.branches[source]
    branches = {label: dataclasses.replace(curve) for label in profile.branches}
    return dataclasses.replace(profile, branches=branches)


def at_budgets(rows: dict[str, list[Point]], budgets: Sequence[float]) -> list[dict[str, Any]]:
    """For each pass budget, each configuration's best PSNR among its points that cost at most that much."""
    table = []
    for b in budgets:
        row: dict[str, Any] = {"passes": b}
        for name, points in rows.items():
            fit = [p for p in points if p.measured.passes <= b + 1e-9]
            best = max(fit, key=lambda p: p.measured.quality.psnr, default=None)
            row[name] = None if best is None else {
                "psnr": best.measured.quality.psnr, "ssim": best.measured.quality.ssim, "passes": best.measured.passes,
                "threshold": best.settings.threshold, "max_skip_steps": best.settings.max_skip_steps}
        table.append(row)
    return table
