"""The block stack's input and output on every denoiser call, recorded from outside the stack, and what the
residual forecast predicts from them: an independent check of the skipping hooks (tests) and the data the
forecast study fits A on (benchmarks/quality_study.py). Not used by the library.

`StackRecorder` hooks the module that feeds the stack (the patch embedding) and the one that reads its output
(the final norm), so it sees computed and skipped calls alike and never touches magcache's proxies.
"""

from __future__ import annotations

import torch

# (module whose output is the stack input, module whose first input is the stack output, flatten the input)
AROUND_STACK = {
    "SD3Transformer2DModel": ("pos_embed", "norm_out", False),
    "FluxTransformer2DModel": ("x_embedder", "norm_out", False),
    "WanTransformer3DModel": ("patch_embedding", "norm_out", True),  # Wan flattens the patches in its forward
}


class StackRecorder:
    """`calls`: (x, y) per call of `model`, x the stack input and y the stack output (image tokens)."""

    def __init__(self, model):
        enter, leave, self._flatten = AROUND_STACK[type(model).__name__]
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._x: torch.Tensor | None = None
        self._handles = [model.get_submodule(enter).register_forward_hook(self._enter),
                         model.get_submodule(leave).register_forward_pre_hook(self._leave)]

    def _enter(self, module, args, out):
        self._x = out.flatten(2).transpose(1, 2) if self._flatten else out

    def _leave(self, module, args):
        self.calls.append((self._x.detach().clone(), args[0].detach().clone()))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()

    def __enter__(self) -> "StackRecorder":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def expected_outputs(history, forecast: float) -> list[torch.Tensor | None]:
    """For one branch's calls in order, `[(step, computed, x, y)]`: the stack output the forecast rule gives on
    each skipped call (None for computed ones), from that history's own computed residuals `r = y - x`:
    `x + r_c + A·(t − c)/(c − p)·(r_c − r_p)`, or `x + r_c` with one computed residual so far."""
    done: list[tuple[int, torch.Tensor]] = []
    out: list[torch.Tensor | None] = []
    for step, computed, x, y in history:
        if computed:
            done.append((step, y - x))
            out.append(None)
        elif len(done) == 1:
            out.append(x + done[-1][1])
        else:
            (c, rc), (p, rp) = done[-1], done[-2]
            w = torch.full((), forecast * (step - c) / (c - p), dtype=torch.float32)
            out.append(x + (rc + w * (rc - rp)))
    return out
