"""The library's logger. Library code reports each warning here once (and also returns it in its results,
which the CLI renders). Python users see them on stderr by default and silence or capture them the standard
way:

    logging.getLogger("magcache").setLevel(logging.ERROR)
"""

from __future__ import annotations

import logging

logger = logging.getLogger("magcache")


def warn(message: str, into: list[str] | None = None) -> None:
    """Log `message` as a warning and append it to `into` (a result's warning list), once per list."""
    if into is not None:
        if message in into:
            return
        into.append(message)
    logger.warning(message)
