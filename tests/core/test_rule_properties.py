"""Property tests of the skip rule (hypothesis): what holds for every curve, and what holds only for curves
whose accumulated error grows with the run (every ratio on one side of 1), with the counterexamples that
show why the restriction is needed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from magcache_cli.core.rule import SkipSettings, retention_steps, simulate

FAST = settings(max_examples=150, deadline=None, derandomize=True, database=None)

ratios = st.floats(0.5, 1.5, allow_nan=False)
skip_settings = st.builds(SkipSettings, st.floats(0.0, 2.0), st.integers(0, 6), st.sampled_from([0.0, 0.1, 0.2, 0.5]))


@st.composite
def curves(draw, n_branches: int = 1, one_sided: bool = False):
    steps = draw(st.integers(2, 24))
    side = draw(st.sampled_from([(0.5, 1.0), (1.0, 1.5)])) if one_sided else (0.5, 1.5)
    values = st.floats(*side, allow_nan=False)
    return steps, {f"b{i}": [1.0, *draw(st.lists(values, min_size=steps - 1, max_size=steps - 1))]
                   for i in range(n_branches)}


def runs_of_skips(flags: list[bool]) -> list[int]:
    runs, n = [], 0
    for computed in flags:
        if computed:
            runs.append(n)
            n = 0
        else:
            n += 1
    return [*runs, n]


@FAST
@given(curves(n_branches=2), skip_settings, st.sampled_from(["joint", "independent"]))
def test_k_and_retention_always_hold(data, s, policy):
    steps, c = data
    flags = simulate(c, steps, s, policy)
    keep = retention_steps(s.retention_ratio, steps)
    for f in flags.values():
        assert len(f) == steps and f[0]  # step 0 has nothing cached: always computed
        assert all(f[:keep])
        assert max(runs_of_skips(f)) <= s.max_skip_steps
    if policy == "joint":
        assert flags["b0"] == flags["b1"]
    if s.threshold == 0:
        assert all(all(f) for f in flags.values())


@FAST
@given(curves(one_sided=True), skip_settings, st.floats(0.0, 2.0))
def test_higher_threshold_never_computes_more_for_one_sided_curves(data, s, extra):
    steps, c = data
    higher = SkipSettings(s.threshold + extra, s.max_skip_steps, s.retention_ratio)
    assert sum(simulate(c, steps, higher)["b0"]) <= sum(simulate(c, steps, s)["b0"])


@FAST
@given(curves(n_branches=3, one_sided=True), skip_settings)
def test_joint_never_computes_fewer_than_any_branch_alone_for_one_sided_curves(data, s):
    steps, c = data
    joint = sum(simulate(c, steps, s, "joint")["b0"])
    assert all(joint >= sum(simulate({lb: curve}, steps, s)[lb]) for lb, curve in c.items())


def test_oscillating_curves_break_threshold_monotonicity():
    # E=0.5: step1 err 0.5 skip, step2 err 0.5+0.75 > 0.5 compute; then 0.5, 0.5+0, 0.5+0 skip -> computes {0, 2}.
    # E=1.5: skip 1, 2 (err 1.25), step3 err 1.25+0.875 > 1.5 compute; step4 ratio 2 err 1 skip;
    # step5 acc 2, err 2 > 1.5 compute -> {0, 3, 5}: starting the run later made the ratio 2 count.
    curve = {"a": [1.0, 0.5, 0.5, 0.5, 2.0, 1.0]}
    low, high = (simulate(curve, 6, SkipSettings(e, 10, 0.0))["a"] for e in (0.5, 1.5))
    assert [i for i, f in enumerate(low) if f] == [0, 2]
    assert [i for i, f in enumerate(high) if f] == [0, 3, 5]


def test_oscillating_curves_let_joint_compute_fewer_than_one_branch():
    # a alone (E=0.5): step1 err 0.5 skip, step2 err 1.25 compute, step3 err 1.0 compute -> 3 passes.
    # joint: step1 b's err is 1.0 so both compute (resetting a); steps 2-3 both reach err 0.5 -> skip: 2 passes.
    a, b = [1.0, 0.5, 0.5, 2.0], [1.0, 2.0, 0.5, 2.0]
    s = SkipSettings(0.5, 10, 0.0)
    assert simulate({"a": a}, 4, s)["a"] == [True, False, True, True]
    assert simulate({"a": a, "b": b}, 4, s, "joint")["a"] == [True, True, False, False]
