"""Shared CLI option aliases (one place, so every command spells and documents them the same way)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from magcache_cli.types import BranchPolicy as _Policy
from magcache_cli.types import Dtype as _Dtype
from magcache_cli.types import Offload as _Offload


def choices(enum) -> str:
    """`a | b | c`: an enum's values for a help text (the enum is the one list of what is accepted)."""
    return " | ".join(enum.values())

LOAD = "Model loading"
CALL = "Pipeline call"
SKIP = "Skipping"

Model = Annotated[Optional[str], typer.Option("--model", "-m", help="Hub id or local pipeline folder. Default: the bundled demo model (builtin:demo).", rich_help_panel=LOAD)]
Revision = Annotated[Optional[str], typer.Option(help="Hub revision (branch, tag or commit).", rich_help_panel=LOAD)]
Variant = Annotated[Optional[str], typer.Option(help="Weights variant, e.g. fp16.", rich_help_panel=LOAD)]
Dtype = Annotated[str, typer.Option(help=f"{choices(_Dtype)} (auto: bf16 on CUDA, fp32 on CPU).", rich_help_panel=LOAD)]
Device = Annotated[str, typer.Option(help="auto | cuda | mps | cpu.", rich_help_panel=LOAD)]
Offload = Annotated[str, typer.Option(help=f"{choices(_Offload)} CPU offload.", rich_help_panel=LOAD)]
BranchPolicy = Annotated[str, typer.Option(help=f"{choices(_Policy)}. joint: skip a step only when every branch may skip (default). independent: each sequential branch decides alone.", rich_help_panel=SKIP)]
AllowPickle = Annotated[bool, typer.Option("--allow-pickle", help="Allow non-safetensors weights (only for models you trust).", rich_help_panel=LOAD)]
TrustRemoteCode = Annotated[bool, typer.Option("--trust-remote-code", help="Allow custom pipeline code from the model repo.", rich_help_panel=LOAD)]
VaeTiling = Annotated[bool, typer.Option("--vae-tiling", help="Decode tiled: vae.enable_tiling() after loading (some VAEs need it, e.g. Allegro's).", rich_help_panel=LOAD)]
VaeSlicing = Annotated[bool, typer.Option("--vae-slicing", help="Decode one sample at a time: vae.enable_slicing() after loading.", rich_help_panel=LOAD)]
Compile = Annotated[str, typer.Option("--compile", help="torch.compile the transformer: none | repeated (its repeated blocks, fullgraph=True) | full (the whole model) | auto (the best that works: repeated where the transformer declares repeated blocks, else full). `--compile` alone means auto. The first call compiles; skipping adds no recompilation.", rich_help_panel=LOAD)]

Prompt = Annotated[Optional[list[str]], typer.Option("--prompt", "-p", help="Prompt; repeat for several.", rich_help_panel=CALL)]
PromptsFile = Annotated[Optional[Path], typer.Option(help="File with one prompt per line (# comments allowed).", rich_help_panel=CALL)]
Seed = Annotated[Optional[list[int]], typer.Option("--seed", "-s", help="Seed; repeat for several. Every prompt runs with every seed.", rich_help_panel=CALL)]
Steps = Annotated[Optional[int], typer.Option(help="Denoising steps.", rich_help_panel=CALL)]
GuidanceScale = Annotated[Optional[float], typer.Option(help="Guidance scale.", rich_help_panel=CALL)]
NegativePrompt = Annotated[Optional[str], typer.Option(help="Negative prompt.", rich_help_panel=CALL)]
Height = Annotated[Optional[int], typer.Option(help="Output height in pixels.", rich_help_panel=CALL)]
Width = Annotated[Optional[int], typer.Option(help="Output width in pixels.", rich_help_panel=CALL)]
NumFrames = Annotated[Optional[int], typer.Option(help="Frames, for video pipelines.", rich_help_panel=CALL)]
Set = Annotated[Optional[list[str]], typer.Option("--set", help="Any other call argument as KEY=VALUE (VALUE parsed as YAML), e.g. --set true_cfg_scale=4, or KEY=@PATH for an image or video file (--set reference=@ref.png). Repeatable.", rich_help_panel=CALL)]

Threshold = Annotated[Optional[float], typer.Option(help="Accumulated-error threshold (0 disables skipping). Default: the profile's.", rich_help_panel=SKIP)]
MaxSkipSteps = Annotated[Optional[int], typer.Option(help="Max consecutive skipped steps (K). Default: the profile's.", rich_help_panel=SKIP)]
RetentionRatio = Annotated[Optional[float], typer.Option(help="Fraction of first steps never skipped. Default: the profile's.", rich_help_panel=SKIP)]
# calibrate has no profile yet: these set the defaults it writes into the new one
NewThreshold = Annotated[Optional[float], typer.Option("--threshold", help="The profile's default accumulated-error threshold (0 disables skipping). Default: 0.06.", rich_help_panel=SKIP)]
NewMaxSkipSteps = Annotated[Optional[int], typer.Option("--max-skip-steps", help="The profile's default max consecutive skipped steps (K). Default: 3.", rich_help_panel=SKIP)]
NewRetentionRatio = Annotated[Optional[float], typer.Option("--retention-ratio", help="The profile's default fraction of first steps never skipped. Default: 0.2.", rich_help_panel=SKIP)]
Forecast = Annotated[Optional[float], typer.Option(help="A in [0, 1]: a skipped step replays r_c + A·(t−c)/(c−p)·(r_c−r_p) from the branch's last two computed residuals instead of reusing r_c (0 = reuse). Default: the profile's (0 if unset).", rich_help_panel=SKIP)]

Repeats = Annotated[int, typer.Option("--repeats", help="Wall time: interleaved timed repeats of uncached, cached and fewer steps (after a warm-up); medians are reported.", rich_help_panel=SKIP)]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout; everything else goes to stderr.")]
Force = Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")]

ContextParallel = Annotated[Optional[str], typer.Option("--context-parallel", help="Split each sample's sequence across the torchrun ranks with diffusers' context parallelism: ulysses=N, ring=N, or both (ring=2,ulysses=2); N × M must equal the number of processes. GPUs only.", rich_help_panel=LOAD)]

INPUTS = "Inputs and pipeline class"
Image = Annotated[Optional[list[Path]], typer.Option("--image", help="Input image file for the pipeline's `image` argument (img2img, inpainting, editing, image-to-video); repeat for pipelines that take several.", rich_help_panel=INPUTS)]
MaskImage = Annotated[Optional[Path], typer.Option("--mask-image", help="Mask image file (inpainting).", rich_help_panel=INPUTS)]
ControlImage = Annotated[Optional[Path], typer.Option("--control-image", help="Control image file (ControlNet pipelines).", rich_help_panel=INPUTS)]
Video = Annotated[Optional[Path], typer.Option("--video", help="Input video: a folder of frames, an MP4 (needs the video extra) or a GIF.", rich_help_panel=INPUTS)]
Strength = Annotated[Optional[float], typer.Option("--strength", help="How much of the schedule to run from the input (img2img, inpainting, video-to-video): 1 runs all steps, 0.5 the last half.", rich_help_panel=INPUTS)]
Pipeline = Annotated[Optional[str], typer.Option("--pipeline", help="Load the weights with this diffusers class, e.g. FluxImg2ImgPipeline, FluxInpaintPipeline, WanImageToVideoPipeline, AutoPipelineForImage2Image. run and tune default to the class recorded in their profile.", rich_help_panel=INPUTS)]
Component = Annotated[Optional[list[str]], typer.Option("--component", help="Extra model component as NAME=ID_OR_DIR, e.g. controlnet=InstantX/FLUX.1-dev-Controlnet-Canny. Repeatable; recorded in the profile.", rich_help_panel=INPUTS)]

