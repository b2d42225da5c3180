"""The field tables of docs/profile-format.md, written from the schema declaration (`scripts/gen_profile_docs.py`
puts them in the docs; a test fails when they drift)."""

from __future__ import annotations

from magcache_cli.profile.schema import (
    SECTIONS,
    BranchCurves,
    AdapterInfo,
    InputFile,
    Profile,
    Quantization,
    TransformerFile,
    schema_fields,
)
from magcache_cli.profile.validate import _SCALARS

_DOC_TYPES = {"input": "mapping", "adapter": "mapping", "quant": "mapping", "tfile": "mapping", "map": "mapping", "{str}": "mapping str → str", "section": "mapping", "branches": "mapping",
              "version": "int", "curve+": "list[float]", "curve": "list[float]", "window": "[int, int]"}


def _doc_type(kind: str) -> str:
    null = kind.endswith("?")
    kind = kind.rstrip("?")
    if kind.startswith("["):
        text = f"list[{_doc_type(kind[1:-1])}]"
    else:
        text = _DOC_TYPES.get(kind) or _SCALARS[kind][3]
    return f"{text} \\| null" if null else text


def field_table(cls: type) -> str:
    """The markdown field table of one section, as docs/profile-format.md shows it."""
    rows = ["| key | type | required | meaning |", "|---|---|---|---|"]
    for f in schema_fields(cls):
        rows.append(f"| `{f.key}` | {_doc_type(f.kind)} | {'yes' if f.required else 'no'} | {f.doc} |")
    return "\n".join(rows)


def field_tables() -> dict[str, str]:
    """Every section's field table, keyed as in the docs' `<!-- fields:NAME -->` markers."""
    return {"top": field_table(Profile), **{name: field_table(cls) for name, cls in SECTIONS.items()},
            "input": field_table(InputFile), "adapter": field_table(AdapterInfo),
            "quant": field_table(Quantization), "tfile": field_table(TransformerFile), "branch": field_table(BranchCurves)}
