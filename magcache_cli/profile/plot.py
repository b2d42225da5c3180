"""`profile plot --output`: the curves as a PNG (needs matplotlib, the `plot` extra)."""

from __future__ import annotations

import os
from pathlib import Path

from magcache_cli.errors import MagCacheError, UsageError
from magcache_cli.profile.schema import Profile


class MissingExtraError(MagCacheError):
    """An optional dependency (a `magcache-cli[...]` extra) is not installed."""


def plot_png(p: Profile, output: str | os.PathLike, title: str) -> Path:
    """Draw every branch's ratio curve with its ±ratio_std band and save it (format from the suffix)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtraError("plotting to a file needs matplotlib, which is not installed",
                                hint="pip install 'magcache-cli[plot]', or leave out the output file for a terminal chart") from None
    out = Path(output)
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    for label, b in p.branches.items():
        steps = list(range(len(b.ratios)))
        line = ax.plot(steps, b.ratios, marker=".", label=label)[0]
        if b.ratio_std is not None:
            ax.fill_between(steps, [r - s for r, s in zip(b.ratios, b.ratio_std)],
                            [r + s for r, s in zip(b.ratios, b.ratio_std)], color=line.get_color(), alpha=0.2,
                            label=f"{label} ±ratio_std")
    ax.axhline(1.0, color="gray", linestyle=":", linewidth=1)
    if all(b.ratio_std is None for b in p.branches.values()):
        title += "\n(no ratio_std in this profile: no band)"
    ax.set(title=title, xlabel="step", ylabel="magnitude ratio ‖r_t‖ / ‖r_{t-1}‖")
    ax.legend()
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(out, dpi=120)
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot write {out}: {e}", hint="check the folder and use a .png, .svg or .pdf name") from e
    return out
