"""The skip rule, resampling and residual statistics, checked with numbers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from magcache_cli.core.charts import sparkline, timeline
from magcache_cli.core.rule import (
    SkipSettings,
    resample,
    residual_stats,
    retention_steps,
    schedule_summary,
    simulate,
)

torch.set_num_threads(1)

T, F = True, False

# One branch, threshold 0.15, K = 2, R = 0:
# step 0: acc_ratio 1.0, err 0.0, acc_steps 1, but nothing cached yet       -> compute, reset
# step 1: ratio 1.0  -> acc_ratio 1.0,  err 0.0,             acc_steps 1  -> skip
# step 2: ratio 1.1  -> acc_ratio 1.1,  err 0.0 + 0.1 = 0.1, acc_steps 2  -> skip
# step 3: ratio 1.1  -> acc_ratio 1.21, err 0.1 + 0.21 = 0.31 > 0.15      -> compute, reset
# step 4: ratio 0.9  -> acc_ratio 0.9,  err 0.1,             acc_steps 1  -> skip
# step 5: ratio 1.0  -> acc_ratio 0.9,  err 0.1 + 0.1 = 0.2 > 0.15        -> compute, reset
# step 6: ratio 1.05 -> acc_ratio 1.05, err 0.05,            acc_steps 1  -> skip
# step 7: ratio 0.8  -> acc_ratio 0.84, err 0.05 + 0.16 = 0.21 > 0.15     -> compute
COND = [1.0, 1.0, 1.1, 1.1, 0.9, 1.0, 1.05, 0.8]
COND_SCHEDULE = [T, F, F, T, F, T, F, T]

# A flat branch that is only limited by K = 2 (and one jump at step 3), on its own:
# step 0 compute (no cache); 1, 2 skip (acc_steps 1, 2); 3: ratio 1.3, acc_steps 3 > K -> compute;
# 4, 5 skip; 6: acc_steps 3 > K -> compute; 7 skip.
UNCOND = [1.0, 1.0, 1.0, 1.3, 1.0, 1.0, 1.0, 1.0]
UNCOND_INDEPENDENT = [T, F, F, T, F, F, T, F]

SETTINGS = SkipSettings(threshold=0.15, max_skip_steps=2, retention_ratio=0.0)


def test_retention_steps_rounds_half_up():
    assert retention_steps(0.2, 28) == 6  # 5.6 + 0.5 -> 6
    assert retention_steps(0.1, 28) == 3  # 2.8 + 0.5 -> 3
    assert retention_steps(0.25, 10) == 3  # 2.5 + 0.5 -> 3 (not banker's rounding)
    assert retention_steps(0.0, 50) == 0


def test_single_branch_by_hand():
    assert simulate({"main": COND}, 8, SETTINGS) == {"main": COND_SCHEDULE}
    assert simulate({"main": COND}, 8, SETTINGS, policy="independent") == {"main": COND_SCHEDULE}


def test_retention_forces_leading_steps():
    # R = 0.25 at 8 steps -> int(2.5) = 2 leading steps computed. Then:
    # step 2: acc_ratio 1.1, err 0.1 -> skip; step 3: 1.21, err 0.31 -> compute; the rest as above.
    settings = SkipSettings(threshold=0.15, max_skip_steps=2, retention_ratio=0.25)
    assert simulate({"main": COND}, 8, settings)["main"] == [T, T, F, T, F, T, F, T]


def test_threshold_zero_disables_skipping():
    settings = SkipSettings(threshold=0.0, max_skip_steps=5, retention_ratio=0.0)
    assert simulate({"main": [1.0] * 10}, 10, settings)["main"] == [T] * 10


def test_max_skip_steps_zero_disables_skipping():
    settings = SkipSettings(threshold=10.0, max_skip_steps=0, retention_ratio=0.0)
    assert simulate({"main": [1.0] * 6}, 6, settings)["main"] == [T] * 6


def test_flat_curve_is_limited_by_k():
    # err stays 0; only acc_steps <= K = 3 limits: compute, 3 skips, compute, 3 skips, ...
    settings = SkipSettings(threshold=0.1, max_skip_steps=3, retention_ratio=0.0)
    assert simulate({"main": [1.0] * 9}, 9, settings)["main"] == [T, F, F, F, T, F, F, F, T]


def test_independent_lets_branches_drift_apart():
    result = simulate({"cond": COND, "uncond": UNCOND}, 8, SETTINGS, policy="independent")
    assert result == {"cond": COND_SCHEDULE, "uncond": UNCOND_INDEPENDENT}


def test_joint_skips_only_when_every_branch_may():
    # step 1: cond (err 0, 1 step) and uncond (err 0, 1 step) may skip       -> skip both
    # step 2: cond (err 0.1, 2 steps), uncond (err 0, 2 steps)              -> skip both
    # step 3: cond err 0.31 (and uncond 3 steps)                            -> both compute, reset
    # step 4: cond (0.1, 1), uncond (0, 1)                                  -> skip both
    # step 5: cond err 0.2 > 0.15; uncond (0, 2) could skip but must compute -> both compute, reset
    # step 6: cond (0.05, 1), uncond (0, 1)                                 -> skip both
    # step 7: cond err 0.21                                                 -> both compute
    result = simulate({"cond": COND, "uncond": UNCOND}, 8, SETTINGS)
    assert result == {"cond": COND_SCHEDULE, "uncond": COND_SCHEDULE}
    assert result["uncond"] != UNCOND_INDEPENDENT


def test_simulate_resamples_other_lengths():
    # A 15-step curve used at 8 steps: scale 14 / 7 = 2, so step i reads index 2i.
    long_curve = [1.0] + [9.0] * 14
    for i, v in enumerate(COND):
        long_curve[2 * i] = v
    assert simulate({"main": long_curve}, 8, SETTINGS)["main"] == COND_SCHEDULE


@pytest.mark.parametrize(
    "kwargs",
    [
        {"steps": 0},
        {"steps": 8, "policy": "sometimes"},
        {"steps": True},
    ],
)
def test_simulate_rejects_bad_input(kwargs):
    with pytest.raises(ValueError):
        simulate({"main": COND}, settings=SETTINGS, **kwargs)


def test_simulate_rejects_no_curves():
    with pytest.raises(ValueError):
        simulate({}, 8, SETTINGS)


@pytest.mark.parametrize(
    "args",
    [(-0.1, 2, 0.2), (math.nan, 2, 0.2), (0.1, -1, 0.2), (0.1, True, 0.2), (0.1, 2, 1.0), (0.1, 2, -0.1)],
)
def test_skip_settings_validation(args):
    with pytest.raises(ValueError):
        SkipSettings(*args)


def test_resample_28_to_10():
    curve = [float(k) for k in range(28)]
    # scale = 27 / 9 = 3 exactly: index 3i
    assert resample(curve, 10) == [float(3 * i) for i in range(10)]


def test_resample_10_to_28():
    curve = [float(k) for k in range(10)]
    # scale = 9 / 27 = 1/3: i = 3k -> k, 3k+1 -> k (k + 0.33), 3k+2 -> k + 1 (k + 0.67)
    expected = [0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6, 7, 7, 7, 8, 8, 8, 9, 9]
    assert resample(curve, 28) == [float(k) for k in expected]
    assert expected == [round(i * 9 / 27) for i in range(28)]


def test_resample_rounds_half_to_even():
    # 6 -> 3: scale 2.5, i = 1 maps to 2.5 -> 2 (half to even), i = 2 -> 5
    assert resample([0.0, 1.0, 2.0, 3.0, 4.0, 5.0], 3) == [0.0, 2.0, 5.0]
    # 4 -> 3: scale 1.5, i = 1 maps to 1.5 -> 2
    assert resample([0.0, 1.0, 2.0, 3.0], 3) == [0.0, 2.0, 3.0]


@pytest.mark.parametrize("m,n", [(28, 10), (10, 28), (50, 28), (28, 50), (6, 3), (8, 4), (30, 7), (2, 5)])
def test_resample_matches_numpy_reference(m, n):
    curve = [float(k) for k in range(m)]
    idx = np.round(np.arange(n) * ((m - 1) / (n - 1))).astype(int)
    assert resample(curve, n) == [float(k) for k in idx]


def test_resample_edge_cases():
    assert resample([1.0, 1.2, 1.3], 1) == [1.0]
    curve = [1.0, 1.2]
    out = resample(curve, 2)
    assert out == curve and out is not curve
    with pytest.raises(ValueError):
        resample([], 4)
    with pytest.raises(ValueError):
        resample([1.0], 0)


def test_residual_stats_doubling():
    prev = torch.randn(2, 3, 5, 8)
    ratio, std, cos_dist = residual_stats(prev, 2 * prev)
    assert ratio == pytest.approx(2.0, abs=1e-5)
    assert std == pytest.approx(0.0, abs=1e-5)
    assert cos_dist == pytest.approx(0.0, abs=1e-5)


def test_residual_stats_orthogonal():
    prev = torch.tensor([[[1.0, 0.0]]])
    cur = torch.tensor([[[0.0, 3.0]]])
    assert residual_stats(prev, cur) == pytest.approx((3.0, 0.0, 1.0))


def test_residual_stats_mixed_token_norms():
    # token ratios 2 and 4: mean 3, population std sqrt(((2-3)^2 + (4-3)^2) / 2) = 1; same directions
    prev = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    cur = torch.tensor([[[2.0, 0.0], [0.0, 4.0]]])
    assert residual_stats(prev, cur) == pytest.approx((3.0, 1.0, 0.0))


def test_residual_stats_rows_select_a_branch():
    # row 0 doubles, row 1 quadruples (batched CFG: [uncond, cond])
    prev = torch.ones(2, 4, 3)
    cur = torch.cat([2 * prev[:1], 4 * prev[1:]])
    assert residual_stats(prev, cur, rows=slice(0, 1)) == pytest.approx((2.0, 0.0, 0.0), abs=1e-6)
    assert residual_stats(prev, cur, rows=slice(1, 2)) == pytest.approx((4.0, 0.0, 0.0), abs=1e-6)
    assert residual_stats(prev, cur) == pytest.approx((3.0, 1.0, 0.0), abs=1e-6)


def test_residual_stats_low_precision_input_is_computed_in_float32():
    prev = torch.full((1, 2, 4), 0.5, dtype=torch.bfloat16)
    ratio, std, cos_dist = residual_stats(prev, prev * 3)
    assert isinstance(ratio, float)
    assert (ratio, std) == pytest.approx((3.0, 0.0), abs=1e-6)
    assert cos_dist == pytest.approx(0.0, abs=1e-6)


def test_residual_stats_rejects_bad_shapes():
    with pytest.raises(ValueError):
        residual_stats(torch.ones(1, 2, 3), torch.ones(1, 2, 4))
    with pytest.raises(ValueError):
        residual_stats(torch.ones(3), torch.ones(3))
    with pytest.raises(ValueError):
        residual_stats(torch.ones(2, 2, 3), torch.ones(2, 2, 3), rows=slice(2, 2))


def test_schedule_summary():
    summary = schedule_summary({"cond": COND_SCHEDULE, "uncond": UNCOND_INDEPENDENT})
    assert summary["cond"] == {"computed": [0, 3, 5, 7], "skipped": [1, 2, 4, 6], "num_computed": 4, "num_skipped": 4}
    assert summary["uncond"]["computed"] == [0, 3, 6]
    assert summary["uncond"]["num_skipped"] == 5
    assert list(summary) == ["cond", "uncond"]


def test_timeline():
    assert timeline(COND_SCHEDULE) == "█░░█░█░█"
    assert timeline([]) == ""


def test_sparkline():
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([1.0, 2.0]) == "▁█"
    assert sparkline([1.0, 1.5, 2.0]) == "▁▅█"  # 0.5 * 7 = 3.5 -> level 4
    assert sparkline([1.1, 1.1, 1.1]) == "▄▄▄"
    assert sparkline([]) == ""
    with pytest.raises(ValueError):
        sparkline([1.0, math.inf])
