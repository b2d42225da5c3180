"""magcache: MagCache step skipping for any diffusers DiT pipeline, driven by shareable YAML profiles.

Python API (see docs/python-api.md): `apply`, `remove`, `calibrate`, `load_profile`, `save_profile`.
"""

__version__ = "0.1.0"

_API = {"apply", "remove", "calibrate", "load_profile", "save_profile", "check_compatibility", "MagCache"}
__all__ = sorted(_API | {"__version__"})


def __getattr__(name: str):
    # Lazy, so that `magcache --version` and `--help` do not import torch.
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'magcache_cli' has no attribute {name!r}")
