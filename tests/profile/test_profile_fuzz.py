"""Fuzzing the profile loader: any mutation of a valid profile either loads or raises ProfileError (never
another exception, never unbounded work), and hostile YAML is refused before anything is built."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from magcache_cli.errors import ProfileError
from magcache_cli.profile import reading
from magcache_cli.profile.io import load_profile
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
