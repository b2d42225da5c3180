"""Find profiles by name (a path, a shipped profile, or one in a `MAGCACHE_PROFILE_PATH` folder) and list them.

Nothing here prints: functions return data and raise typed errors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from magcache_cli.errors import ProfileError
from magcache_cli.profile.io import load_profile
from magcache_cli.profile.schema import Profile

PROFILE_PATH_ENV = "MAGCACHE_PROFILE_PATH"
PROFILE_SUFFIXES = (".yaml", ".yml")


# ------------------------------------------------------------------------------------- finding profiles


def shipped_dir() -> Path:
    """The repository's top-level `profiles/` folder (curves published by the MagCache authors)."""
    # magcache_cli/profiles is a symlink to the repo's top-level profiles/ (so wheels carry copies)
    return Path(__file__).resolve().parents[1] / "profiles"


def profile_dirs() -> list[Path]:
    """Folders searched for profile names, first match wins: `MAGCACHE_PROFILE_PATH` entries
    (os.pathsep-separated, in order), then the shipped `profiles/`. A team's file shadows a shipped one."""
    env = os.environ.get(PROFILE_PATH_ENV, "")
    return [*(Path(p).expanduser() for p in env.split(os.pathsep) if p.strip()), shipped_dir()]


def available_profiles() -> dict[str, Path]:
    """Profile name (file stem) -> file, for every `*.yaml` / `*.yml` in `profile_dirs()`, sorted by name."""
    found: dict[str, Path] = {}
    for folder in profile_dirs():
        if not folder.is_dir():
            continue
        for f in sorted(folder.iterdir()):
            if f.suffix in PROFILE_SUFFIXES and f.is_file() and not f.name.startswith("."):
                found.setdefault(f.stem, f)
    return dict(sorted(found.items()))


def resolve_profile(ref: str | os.PathLike) -> Path:
    """A profile reference as users type it: an existing path wins, otherwise a profile name.

    Names are file stems looked up in `profile_dirs()` (e.g. `flux1-dev`). Raises ProfileError whose hint
    lists the available names.
    """
    text = os.fspath(ref)
    if text and Path(text).exists():
        return Path(text)
    names = available_profiles()
    if text in names:
        return names[text]
    listing = ", ".join(names) or "none installed"
    looks_like_path = "/" in text or os.sep in text or Path(text).suffix in PROFILE_SUFFIXES
    what = "profile file not found" if looks_like_path else "no profile file or profile named"
    raise ProfileError(f"{what}: {text!r}", path=text, hint=(
        f"pass a path to a profile file, or one of the names: {listing} (see `magcache profile list`; "
        f"more folders via {PROFILE_PATH_ENV})"))


def load_by_ref(ref: str | os.PathLike) -> tuple[Profile, Path]:
    """`resolve_profile` then `load_profile`."""
    path = resolve_profile(ref)
    return load_profile(path), path


def list_profiles() -> list[dict[str, Any]]:
    """One row per profile name: name, path, shipped, model, steps, guidance, branches, defaults, source.

    A file that does not validate is listed with `error` instead of the profile fields.
    """
    shipped = shipped_dir()
    rows = []
    for name, path in available_profiles().items():
        row: dict[str, Any] = {"name": name, "path": str(path), "shipped": path.resolve().parent == shipped.resolve()}
        try:
            p = load_profile(path)
        except ProfileError as e:
            rows.append({**row, "error": str(e)})
            continue
        d = p.defaults
        rows.append({**row, "model": p.model.id, "pipeline_class": p.model.pipeline_class,
                     "steps": p.calibration.steps, "guidance_mode": p.calibration.guidance_mode,
                     "branches": list(p.branches),
                     "defaults": {"threshold": d.threshold, "max_skip_steps": d.max_skip_steps,
                                  "retention_ratio": d.retention_ratio},
                     "source": p.source})
    return rows


# ------------------------------------------------------------------------------------------------ import


# -------------------------------------------------------------------------------------------------- diff


# ------------------------------------------------------------------------------------------------ export


# -------------------------------------------------------------------------------------------------- plot


