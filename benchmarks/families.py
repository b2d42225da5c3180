"""Run every tiny DiT family offline: stack found, guidance mode, threshold-0 exactness, and timings.

    .venv/bin/python benchmarks/families.py [family ...]

Prints one line per family (tiny random-weight pipelines from magcache_cli.tiny, 8 steps, one CPU thread).
"""
import os
import sys
import tempfile
import time

import numpy as np
import torch

os.environ["HF_HUB_OFFLINE"]="1"
torch.set_num_threads(1)
from magcache_cli.core.rule import SkipSettings
from magcache_cli.runner.calibrate import calibrate
from magcache_cli.runner.loading import LoadOptions, load_pipeline, quiet_libraries
from magcache_cli.runner.run import run
from magcache_cli.testing.helpers import media
from magcache_cli.testing.tiny import FAMILIES, build_tiny_pipeline

quiet_libraries()
fams = sys.argv[1:] or [k for k in FAMILIES if k != "sdxl"]
for fam in fams:
    try:
        d = os.path.join(tempfile.gettempdir(), f"magcache_tiny_{fam}")
        if not os.path.exists(d): build_tiny_pipeline(fam, d)
        pipe, dev, dt = load_pipeline(LoadOptions(d, **FAMILIES[fam].load))
        kw = dict(FAMILIES[fam].call_kwargs); kw["num_inference_steps"]=8; kw["output_type"]="np"
        t=time.time()
        res = calibrate(pipe, ["a cat"], [0], kw, model_id=d)
        tc=time.time()-t
        p = res.profile
        t=time.time()
        r0 = run(pipe, ["a cat"], [1], kw, profile=p, settings=SkipSettings(0.0, 3, 0.2))
        nc = run(pipe, ["a cat"], [1], kw, profile=p, no_cache=True)
        def arr(o):
            return media(o.outputs[0])  # the picture field by type (Kandinsky 5: `.image`)
        same = np.array_equal(arr(r0), arr(nc))
        r = run(pipe, ["a cat"], [1], kw, profile=p, settings=SkipSettings(1.0, 3, 0.2))
        tr=time.time()-t
        print(f"{fam:22s} {FAMILIES[fam].guidance:18s} mode={p.calibration.guidance_mode:10s} br={list(p.branches)} stack={res.stack.describe()} exact={same} passes={r.transformer_calls}/{r.total_calls} calib={tc:.2f}s run3={tr:.2f}s notes={res.stack.notes}", flush=True)
    except Exception as e:
        print(f"{fam:22s} FAIL {type(e).__name__}: {str(e)[:300]}", flush=True)
