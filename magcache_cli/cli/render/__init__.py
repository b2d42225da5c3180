"""The only code that writes to the terminal (rich tables, progress, sparklines, timelines, `--json`).

Commands use it as `from magcache_cli.cli import render as console`; it re-exports the three modules below.
"""

from magcache_cli.cli.render.console import *  # noqa: F403
from magcache_cli.cli.render.profile import *  # noqa: F403
from magcache_cli.cli.render.quality import *  # noqa: F403
