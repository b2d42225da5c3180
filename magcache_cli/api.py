"""The Python API: apply a profile to a pipeline you already have, or calibrate it in your own code.

    import magcache_cli as magcache

    profile = magcache.load_profile("flux.yaml")          # a path, or the name of a shipped profile
    with magcache.apply(pipe, profile, threshold=0.12) as cache:
        image = pipe("a cat playing chess", num_inference_steps=28).images[0]
    report = cache.report                                 # per-branch computed/skipped steps, passes

    profile = magcache.calibrate(pipe, ["a cat playing chess"], seeds=[0, 1], num_inference_steps=28)
    magcache.save_profile(profile, "flux.yaml")
"""

from __future__ import annotations

import os
from pathlib import Path

from magcache_cli.core.stacks import find_denoisers
from magcache_cli.profile.io import load_profile as _load_profile_file
from magcache_cli.profile.plan import settings_from
from magcache_cli.profile.resolve import resolve_profile
from magcache_cli.profile.schema import Profile
from magcache_cli.runner.cache import (
    _ATTR,
    MagCache,
    call_warnings,
    check_compatibility,
)

__all__ = ["MagCache", "apply", "calibrate", "call_warnings", "check_compatibility", "load_profile", "remove",
           "save_profile"]


def load_profile(ref: str | os.PathLike) -> Profile:
    """Load a profile from a path, or by the name of a shipped profile (see `magcache profile list`)."""
    return _load_profile_file(resolve_profile(str(ref)))


def apply(pipe, profile: Profile | str | os.PathLike, *, threshold: float | None = None,
          max_skip_steps: int | None = None, retention_ratio: float | None = None, forecast: float | None = None,
          branch_policy: str = "joint", force: bool = False, speedup: float | None = None,
          steps: int | None = None) -> MagCache:
    """Apply a profile to `pipe` (hooks installed now); use as a context manager or call `.remove()`.

    Settings left as None come from the profile's defaults. `forecast` (A in [0, 1]) replaces the reused
    residual of a skipped step by `r_c + A·(t − c)/(c − p)·(r_c − r_p)` from the branch's last two computed
    residuals; 0 is MagCache's plain reuse (see docs/quality.md).

    `speedup=X` chooses the settings from the profile's curves instead (no extra run): predicted transformer
    passes at most 1/X of the full run at `steps` steps (default: the profile's calibration steps), the lowest
    predicted error among them; the settings given explicitly are held. The choice is `.speedup_choice`."""
    if not isinstance(profile, Profile):
        profile = load_profile(profile)
    choice = None
    if speedup is not None:
        from magcache_cli.profile.speedup import choose

        fixed = {"threshold": threshold, "max_skip_steps": max_skip_steps, "retention_ratio": retention_ratio}
        choice = choose(profile, steps or profile.calibration.steps, speedup, branch_policy, forecast, fixed)
        settings = choice.settings
    else:
        settings = settings_from(profile, threshold, max_skip_steps, retention_ratio, forecast)
    cache = MagCache(pipe, profile, settings, branch_policy, force)
    cache.speedup_choice = choice
    return cache.apply()


def remove(pipe) -> None:
    """Remove whatever profile is applied to `pipe` (no-op if none)."""
    current = getattr(pipe, _ATTR, None)
    if current is not None:
        current.remove()


def calibrate(pipe, prompts: list[str] | str, seeds: list[int] | int = 0, *, model_id: str | None = None,
              **call_kwargs) -> Profile:
    """Calibrate `pipe` on prompts × seeds (full inference, outputs unchanged) and return the Profile."""
    from magcache_cli.runner.calibrate import calibrate as _calibrate

    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    model_id = model_id or getattr(getattr(pipe, "config", None), "_name_or_path", None) or type(pipe).__name__
    _, denoiser = find_denoisers(pipe)[0]
    p = next(iter(denoiser.parameters()), None)
    dtype = str(p.dtype).removeprefix("torch.") if p is not None else None
    device = str(p.device) if p is not None else None
    return _calibrate(pipe, prompts, seeds, call_kwargs, model_id=str(model_id), dtype=dtype, device=device).profile


def save_profile(profile: Profile, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a profile atomically (refuses to overwrite unless `overwrite=True`)."""
    from magcache_cli.profile.io import save_profile as _save

    return _save(profile, path, overwrite=overwrite)
