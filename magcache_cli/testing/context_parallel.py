"""diffusers' Ulysses context parallelism on CPU processes, for tests only.

diffusers 0.42.1's `enable_parallelism` picks the device as `rank % torch.accelerator.device_count()`, a
division by zero without an accelerator, so the CLI refuses `--context-parallel` on CPU. The rest of diffusers'
machinery runs on CPU under gloo with the native attention backend (Ulysses only: ring attention needs a
backend that returns the log-sum-exp, which the native one does not). This helper does what
`ModelMixin._resolve_parallel_config` and `enable_parallelism` do, with the CPU device given explicitly, so a
test can run a real sequence-split transformer under MagCache's hooks on two gloo processes.
"""

from __future__ import annotations

import torch


def enable_ulysses_on_cpu(transformer, degree: int) -> None:
    """Split `transformer`'s sequence over `degree` gloo ranks (the whole world) as diffusers would on GPUs."""
    from diffusers.hooks.context_parallel import apply_context_parallel
    from diffusers.models._modeling_parallel import (
        ContextParallelConfig,
        ParallelConfig,
    )

    dist = torch.distributed
    cp = ContextParallelConfig(ulysses_degree=degree)
    mesh = dist.device_mesh.init_device_mesh("cpu", cp.mesh_shape, mesh_dim_names=cp.mesh_dim_names)
    config = ParallelConfig(context_parallel_config=cp)
    config.setup(dist.get_rank(), dist.get_world_size(), torch.device("cpu"), mesh=mesh)
    transformer._parallel_config = config
    for module in transformer.modules():
        processor = getattr(module, "processor", None)
        if processor is not None and hasattr(processor, "_parallel_config"):
            processor._parallel_config = config
    apply_context_parallel(transformer, cp, transformer._cp_plan)
