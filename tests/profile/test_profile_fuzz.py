"""Fuzzing the profile loader: any mutation of a valid profile either loads or raises ProfileError (never
another exception, never unbounded work), and hostile YAML is refused before anything is built. Both ways are
pinned down so that neither a loader that refuses everything nor one that accepts everything passes: edits that
keep the profile valid (values within their ranges, other YAML spellings, comments, section order) load as the
profile the edit describes and round-trip; edits that break one field raise ProfileError naming that field."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from magcache_cli.errors import ProfileError
from magcache_cli.profile import reading
from magcache_cli.profile.io import dump_profile, load_profile
from magcache_cli.profile.validate import profile_from_dict

SHIPPED = Path(__file__).resolve().parents[2] / "profiles"
VALID = (SHIPPED / "flux1-dev.yaml").read_text()
FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])

YAML_BITS = ["&a ", "*a", "<<: ", "!!python/object:os.system ", "!!binary ", "!!set ", "{", "}", "[", "]", ": ",
             "- ", "? ", "#", "'", '"', "\t", "\n", "  ", "null", "~", "true", ".nan", "-.inf", "1e400", "-1",
             "0", "2024-13-45", "0x1f", "0o17", "1_000", "😀", "\x00", "---\n", "...\n", "%YAML 1.1\n", "|", ">"]


def load_text(text: str):
    return profile_from_dict(reading.parse_yaml(text))


@st.composite
def mutated(draw) -> str:
    text = VALID
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        j = min(len(text), i + draw(st.integers(0, 40)))
        kind = draw(st.sampled_from(["replace", "insert", "delete", "dup_line", "drop_line"]))
        bit = draw(st.sampled_from(YAML_BITS) | st.text(max_size=6))
        if kind == "replace":
            text = text[:i] + bit + text[j:]
        elif kind == "insert":
            text = text[:i] + bit + text[i:]
        elif kind == "delete":
            text = text[:i] + text[j:]
        else:
            lines = text.splitlines(keepends=True)
            k = draw(st.integers(0, len(lines) - 1))
            lines[k:k + 1] = [lines[k], lines[k]] if kind == "dup_line" else []
            text = "".join(lines)
    return text


def test_the_unmutated_profile_loads():
    assert load_text(VALID).model.pipeline_class == "FluxPipeline"


BASE = load_text(VALID)
RATIOS = BASE.branches["main"].ratios
VALID_EDITS = ["ratio", "threshold", "max_skip_steps", "retention_ratio", "source", "model_id", "block_ratios",
               "quoted", "shuffle", "comments"]
# Printable text on one line (letters, digits, punctuation, symbols, spaces), written as a JSON string, which is
# also a YAML double-quoted scalar.
LINE_TEXT = st.text(st.characters(categories=["L", "N", "P", "S", "Zs"]), min_size=1, max_size=30)


def rounded(lo: float, hi: float):
    return st.floats(lo, hi).map(lambda x: round(x, 5))  # what a saved profile holds: 5 decimals


def number(v: float) -> str:
    """A float as YAML 1.1 reads it back as a float: PyYAML takes `6e-05` (no dot) for a string."""
    return f"{v:.5f}"


def set_line(text: str, prefix: str, value: str) -> str:
    lines = text.splitlines(keepends=True)
    (i,) = [k for k, line in enumerate(lines) if line.startswith(prefix)]
    lines[i] = prefix + value + "\n"
    return "".join(lines)


def test_the_fuzzed_lines_are_where_the_strategies_expect_them():
    for prefix in ("  id: ", "source: ", "  threshold: ", "  max_skip_steps: ", "  retention_ratio: ", "    ratios: ",
                   "  pipeline_class: FluxPipeline", "  steps: 28", "  tuned: null"):
        assert set_line(VALID, prefix, "x").count(prefix + "x\n") == 1
    assert (BASE.defaults.threshold, BASE.defaults.max_skip_steps, BASE.defaults.retention_ratio) == (0.24, 5, 0.1)
    assert len(RATIOS) == BASE.calibration.steps == 28 and RATIOS[0] == 1.0


@st.composite
def valid_edit(draw) -> tuple[str, object]:
    """(text, the Profile it describes): BASE with the drawn fields replaced, whatever the YAML spelling."""
    edits = draw(st.lists(st.sampled_from(VALID_EDITS), min_size=1, max_size=4, unique=True))
    model, defaults, ratios, source = BASE.model, BASE.defaults, list(RATIOS), BASE.source
    text = VALID
    if "ratio" in edits:
        ratios[draw(st.integers(1, len(ratios) - 1))] = draw(rounded(0.01, 50.0))
    if "threshold" in edits:
        defaults = dataclasses.replace(defaults, threshold=draw(rounded(0.0, 5.0)))
        text = set_line(text, "  threshold: ", number(defaults.threshold))
    if "max_skip_steps" in edits:
        defaults = dataclasses.replace(defaults, max_skip_steps=draw(st.integers(0, 100)))
        text = set_line(text, "  max_skip_steps: ", str(defaults.max_skip_steps))
    if "retention_ratio" in edits:
        defaults = dataclasses.replace(defaults, retention_ratio=draw(rounded(0.0, 0.99)))
        text = set_line(text, "  retention_ratio: ", number(defaults.retention_ratio))
    if "source" in edits:
        source = draw(LINE_TEXT)
        text = set_line(text, "source: ", json.dumps(source, ensure_ascii=False))
    if "model_id" in edits:
        model = dataclasses.replace(model, id=draw(LINE_TEXT))
        text = set_line(text, "  id: ", json.dumps(model.id, ensure_ascii=False))
    if "quoted" in edits:
        text = set_line(text, "  pipeline_class: ", '"FluxPipeline"')
    if "block_ratios" in edits:  # a block sequence instead of the flow list
        text = set_line(text, "    ratios:", "\n" + "".join(f"    - {number(v)}\n" for v in ratios)[:-1])
    else:
        text = set_line(text, "    ratios: ", "[" + ", ".join(map(number, ratios)) + "]")
    if "shuffle" in edits:  # top-level sections in another order
        sections = text.rstrip("\n").split("\n\n")
        text = "\n\n".join(draw(st.permutations(sections))) + "\n"
    if "comments" in edits:  # comment and blank lines anywhere between lines
        lines = text.splitlines(keepends=True)
        for _ in range(draw(st.integers(1, 5))):
            extra = draw(st.sampled_from(["\n", "#\n"]) | LINE_TEXT.map(lambda t: f"# {t}\n"))
            lines.insert(draw(st.integers(0, len(lines))), extra)
        text = "".join(lines)
    main = dataclasses.replace(BASE.branches["main"], ratios=ratios)
    return text, dataclasses.replace(BASE, model=model, defaults=defaults, source=source, branches={"main": main})


@settings(FUZZ, max_examples=100)  # each example also writes the profile out (dump_profile: ~7 ms)
@given(valid_edit())
def test_valid_edits_load_as_written_and_round_trip(case):
    text, expected = case
    loaded = load_text(text)  # a ProfileError here is a valid profile refused
    assert loaded == expected
    assert load_text(dump_profile(loaded)) == loaded  # (saving twice gives the same bytes: test_schema.py)


@st.composite
def invalid_edit(draw) -> tuple[str, str]:
    """(text, the dotted field the loader must name): one field broken, the rest valid."""
    kind = draw(st.sampled_from(["ratio", "first_ratio", "ratio_count", "threshold", "retention_ratio",
                                 "max_skip_steps", "unknown_key", "missing_key", "steps"]))
    ratios = list(RATIOS)
    text = VALID
    if kind == "ratio":
        i = draw(st.integers(1, len(ratios) - 1))
        ratios[i] = draw(st.sampled_from([0.0, -1.0]) | rounded(-50.0, -0.00001))
        field = f"branches.main.ratios[{i}]"
    elif kind == "first_ratio":
        ratios[0] = draw(rounded(0.01, 50.0).filter(lambda v: v != 1.0))
        field = "branches.main.ratios[0]"
    elif kind == "ratio_count":
        del ratios[draw(st.integers(0, len(ratios) - 1))]
        ratios[0] = 1.0
        field = "branches.main.ratios"
    elif kind == "threshold":
        text, field = set_line(text, "  threshold: ", number(draw(rounded(-5.0, -0.00001)))), "defaults.threshold"
    elif kind == "retention_ratio":
        value = draw(rounded(1.0, 5.0) | rounded(-5.0, -0.00001))
        text, field = set_line(text, "  retention_ratio: ", number(value)), "defaults.retention_ratio"
    elif kind == "max_skip_steps":
        value = draw(st.integers(-100, -1).map(str) | st.sampled_from(["2.5", "two", "[]"]))
        text, field = set_line(text, "  max_skip_steps: ", value), "defaults.max_skip_steps"
    elif kind == "unknown_key":
        text, field = set_line(text, "  tuned: ", "null\n  colour: blue"), "defaults.colour"
    elif kind == "missing_key":
        text, field = text.replace("  pipeline_class: FluxPipeline\n", ""), "model.pipeline_class"
    else:
        steps = draw(st.sampled_from(["0", "-3", "28.5", "many"]))
        text, field = set_line(text, "  steps: ", steps), "calibration.steps"
    if ratios != RATIOS:
        text = set_line(text, "    ratios: ", "[" + ", ".join(map(number, ratios)) + "]")
    return text, field


@FUZZ
@given(invalid_edit())
def test_invalid_edits_raise_a_profile_error_naming_the_field(case):
    text, field = case
    with pytest.raises(ProfileError) as e:
        load_text(text)
    assert e.value.field == field, str(e.value)


@FUZZ
@given(mutated())
def test_mutations_load_or_raise_profile_error(text):
    try:
        load_text(text)
    except ProfileError:
        pass


@FUZZ
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4),
                    max_leaves=30))
def test_any_plain_document_loads_or_raises_profile_error(doc):
    try:
        profile_from_dict(doc)
    except ProfileError:
        pass


def _bomb(depth: int) -> str:
    """A one-line flow mapping whose aliases expand to 9**depth values."""
    items = ["a0: &a0 [1, 2, 3, 4, 5, 6, 7, 8, 9]"]
    items += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, depth)]
    return "{" + ", ".join(items) + "}"


@pytest.mark.parametrize("line", ["  call_args: {}", "  config: {}", "  tuned: null"])
def test_aliases_inside_a_profile_are_refused_in_one_line(tmp_path, line):
    assert line in VALID
    path = tmp_path / "bomb.yaml"
    path.write_text(VALID.replace(line, f"{line.split(':')[0]}: {_bomb(10)}"))
    with pytest.raises(ProfileError, match="anchors and aliases are not allowed") as e:
        load_profile(path)
    assert "\n" not in str(e.value)
    written_out = VALID.replace(line, f"{line.split(':')[0]}: {{a0: [1, 2]}}")
    load_text(written_out)  # the same place with plain values loads


def test_an_oversized_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "big.yaml"
    with open(path, "w") as f:
        f.write(VALID)
        f.write("#" + "x" * (reading.MAX_BYTES + 10) + "\n")
    with pytest.raises(ProfileError, match="more than a profile can be"):
        load_profile(path)


def test_deep_nesting_and_too_many_values_are_refused():
    with pytest.raises(ProfileError, match="nested deeper"):
        reading.parse_yaml("a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, reading.MAX_DEPTH + 3)))
    with pytest.raises(ProfileError, match="more than"):
        reading.parse_yaml("a: [" + ", ".join(["1"] * (reading.MAX_NODES + 1)) + "]\n")
    with pytest.raises(ProfileError, match="duplicate key"):
        reading.parse_yaml("a: 1\na: 2\n")
