"""`calibrate --speedup X` and `calibrate --tune [TARGET]`: from model to tuned profile in one command."""

from __future__ import annotations

from pathlib import Path

from magcache_cli.cli import render as console
from magcache_cli.cli.common import speedup_choice
from magcache_cli.cli.quality import _measure, _tune_json
from magcache_cli.errors import UsageError
from magcache_cli.types import SPEEDUP_RANGE, BranchPolicy


def tune_goal(spec: str):
    """`calibrate --tune TARGET`: beat[=DB] | psnr=DB | ssim=V | lpips=V | speedup=X, as the search's goal."""
    from magcache_cli.quality.search import DEFAULT_MARGIN_DB
    from magcache_cli.quality.search import Goal as SearchGoal

    names = {"beat": "beat_margin", "psnr": "min_psnr", "ssim": "min_ssim", "lpips": "max_lpips", "speedup": "speedup"}
    key, _, value = spec.partition("=")
    hint = "e.g. --tune (beat fewer steps by 0.5 dB), --tune beat=1, --tune psnr=35 or --tune speedup=2"
    if key not in names or (not value and key != "beat"):
        raise UsageError(f"unknown --tune target {spec!r}", hint=hint)
    try:
        number = float(value) if value else DEFAULT_MARGIN_DB
    except ValueError:
        raise UsageError(f"--tune {spec!r}: {value!r} is not a number", hint=hint) from None
    if key == "speedup" and number not in SPEEDUP_RANGE:
        raise UsageError(f"--tune speedup must be {SPEEDUP_RANGE}, got {number:g}", hint=hint)
    return SearchGoal(**{names[key]: number})


def after_calibration(job, result, speedup, goal, fixed: dict, out: Path) -> dict:
    """`calibrate --speedup X` / `--tune`: new defaults in `result.profile`; returns what `--json` adds. The tune
    search reuses the calibration's outputs as its uncached reference (every step was computed)."""
    import dataclasses

    from magcache_cli.quality.tune import Grid, with_tuned_defaults
    from magcache_cli.quality.tuning import reference_from

    prof, extra = result.profile, {}
    if speedup is not None and goal is None:
        choice = speedup_choice(prof, prof.calibration.steps, speedup, fixed.get("threshold"),
                                fixed.get("max_skip_steps"), fixed.get("retention_ratio"))
        s = choice.settings
        result.profile = dataclasses.replace(prof, defaults=dataclasses.replace(
            prof.defaults, threshold=s.threshold, max_skip_steps=s.max_skip_steps, retention_ratio=s.retention_ratio,
            forecast=s.forecast))
        return {"speedup": choice.to_json()}
    if speedup is not None:
        goal = dataclasses.replace(goal, speedup=speedup)
    ref = reference_from(result.outputs, prof.calibration.steps, result.denoiser_calls / result.runs,
                         result.wall_s / result.runs)
    tuned = _measure(job, prof, goal, None, Grid(), BranchPolicy.JOINT, 3, None, ref)
    written = None
    if tuned.chosen is not None:
        result.profile, written = with_tuned_defaults(prof, tuned), str(out)
    else:
        console.warn(f"tune: no setting meets {goal.describe()}; the profile keeps the calibrated defaults")
    console.render_tune(tuned, False, written)
    extra["tune"] = _tune_json(tuned, written, len(Grid().settings()))
    return extra
