"""magcache: MagCache step skipping for any diffusers DiT pipeline, driven by shareable YAML profiles.

Python API (see docs/python-api.md): `apply`, `remove`, `calibrate`, `load_profile`, `save_profile`,
`check_compatibility`, `MagCache`. Library warnings go to the `magcache` logger (`logging.getLogger("magcache")`).
"""

from magcache_cli.version import __version__

__all__ = ["MagCache", "__version__", "apply", "calibrate", "check_compatibility", "load_profile", "remove",
           "save_profile"]


def __getattr__(name: str):
    # Lazy, so that `magcache --version` and `--help` do not import torch.
    if name in __all__:
        from magcache_cli import api

        return getattr(api, name)
    raise AttributeError(f"module 'magcache_cli' has no attribute {name!r}")
