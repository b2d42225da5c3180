"""Rewrite the field tables of docs/profile-format.md from the schema declaration (magcache_cli/profile/schema.py).

Each table sits between `<!-- fields:NAME -->` and `<!-- /fields -->`; tests/profile/test_schema.py fails
when a table differs from what this script writes.

    python scripts/gen_profile_docs.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from magcache_cli.profile.fields_doc import field_tables  # noqa: E402

MARKED = re.compile(r"(<!-- fields:(\w+) -->\n)(.*?)(\n<!-- /fields -->)", re.S)


def render(doc: str) -> str:
    tables = field_tables()
    return MARKED.sub(lambda m: m.group(1) + tables[m.group(2)] + m.group(4), doc)


if __name__ == "__main__":
    path = ROOT / "docs" / "profile-format.md"
    path.write_text(render(path.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote {path}")
