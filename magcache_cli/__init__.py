"""magcache: MagCache step skipping for any diffusers DiT pipeline, driven by shareable YAML profiles."""

__version__ = "0.1.0"
