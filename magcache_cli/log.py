"""The library's logger. Library code reports warnings here (and returns them in its results); the CLI renders
them. Python users silence or capture them the standard way:

    logging.getLogger("magcache").setLevel(logging.ERROR)
"""

from __future__ import annotations

import logging

logger = logging.getLogger("magcache")
logger.addHandler(logging.NullHandler())
