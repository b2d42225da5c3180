"""`profile diff`: what differs between two profiles, field by field, curve by curve, schedule by schedule."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from magcache_cli.core.charts import timeline
from magcache_cli.core.rule import SkipSettings, resample
from magcache_cli.profile.plan import predict
from magcache_cli.profile.schema import Profile, profile_to_dict
from magcache_cli.types import BranchPolicy


# lists of entries compared entry by entry, field by field (`model.adapters[0].scale`)
_PER_ENTRY = ("model.adapters", "model.quantization")


def _flatten(d: Mapping, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))  # an empty mapping reads as absent
        elif f"{prefix}{k}" in _PER_ENTRY and isinstance(v, list):
            for i, entry in enumerate(v):
                out.update(_flatten(entry, f"{prefix}{k}[{i}]."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def curve_difference(a: Sequence[float], b: Sequence[float], top: int = 3) -> dict[str, Any]:
    """|a - b| per step, `b` resampled to `a`'s length: max and where, mean, and the `top` steps that differ most."""
    rb = resample(b, len(a))
    d = [abs(x - y) for x, y in zip(a, rb)]
    worst = sorted(range(len(d)), key=lambda i: (-d[i], i))[:top]
    return {"max_abs_diff": round(max(d), 6), "max_at_step": d.index(max(d)),
            "mean_abs_diff": round(sum(d) / len(d), 6), "resampled": len(b) != len(a),
            "most_different": [{"step": i, "a": a[i], "b": rb[i], "abs_diff": round(d[i], 6)}
                               for i in worst if d[i] > 0]}


def _schedule(p: Profile, steps: int, settings: SkipSettings, policy: str) -> dict[str, Any]:
    # The same prediction `run` and `schedule` make (batched guidance is always joint; a second expert's
    # branches are simulated inside the steps it runs).
    pred = predict(p, steps, settings, policy)
    return {"passes": pred.passes, "total_passes": pred.total, "branches": {
        label: {"timeline": timeline(f), "num_computed": sum(f), "num_skipped": len(f) - sum(f),
                "skipped": [i for i, x in enumerate(f) if not x]} for label, f in pred.flags.items()}}


def diff_profiles(a: Profile, b: Profile, policy: BranchPolicy = BranchPolicy.JOINT) -> dict[str, Any]:
    """What differs between two profiles, as plain data (`--json` prints it as is).

    - `metadata`: every field outside `branches` that differs (dotted paths), with both values;
    - `curves`: per branch present in both, `curve_difference` on A's step grid (B resampled if needed);
      `only_in_a` / `only_in_b` name the other branches;
    - `schedules`: the skip schedule both profiles give with the same settings (`quality.predict`, as `run`
      and `schedule` simulate it), once at A's defaults and steps and once at B's (once when they are equal):
      per-branch timelines, transformer passes, and the steps where the two schedules differ.
    """
    ma = _flatten({k: v for k, v in profile_to_dict(a).items() if k != "branches"})
    mb = _flatten({k: v for k, v in profile_to_dict(b).items() if k != "branches"})
    fields = list(ma) + [k for k in mb if k not in ma]
    metadata = [{"field": k, "a": ma.get(k), "b": mb.get(k)} for k in fields if ma.get(k) != mb.get(k)]
    common = [label for label in a.branches if label in b.branches]
    curves = {label: curve_difference(a.branches[label].ratios, b.branches[label].ratios) for label in common}
    schedules = []
    for who, p in (("a", a), ("b", b)):
        d = p.defaults
        settings = SkipSettings(d.threshold, d.max_skip_steps, d.retention_ratio)
        key = {"threshold": d.threshold, "max_skip_steps": d.max_skip_steps,
               "retention_ratio": d.retention_ratio, "steps": p.calibration.steps}
        if schedules and all(schedules[0][k] == v for k, v in key.items()):
            schedules[0]["defaults_of"] = "a+b"
            continue
        sa = _schedule(a, p.calibration.steps, settings, policy)
        sb = _schedule(b, p.calibration.steps, settings, policy)
        ta, tb = sa["branches"], sb["branches"]
        differ = {label: [i for i, (x, y) in enumerate(zip(ta[label]["timeline"], tb[label]["timeline"])) if x != y]
                  for label in common}
        schedules.append({"defaults_of": who, **key, "policy": policy, "a": sa, "b": sb, "differ_at": differ})
    return {"metadata": metadata, "curves": curves, "compared_on_steps": a.calibration.steps,
            "only_in_a": [x for x in a.branches if x not in b.branches],
            "only_in_b": [x for x in b.branches if x not in a.branches], "schedules": schedules}
