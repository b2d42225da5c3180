"""The CLI's options, declared once: every flag's name, help text, panel and `Check` (its type), and the
groups calibrate / run / tune share (`Load`, `Prompts`, `Call`, `Inputs`, `Skip`).

Typer needs flat parameters; `command` lets a command take a group instead. A parameter annotated with a
group dataclass is spread, in place, into one Typer option per field, and the group is rebuilt from those
options (by field name) before the command body runs, after every given value passed its `Check`. Adding an
option to a group is one field here; every command taking the group gets the flag, and the set-up
(cli/job.py) reads it from the group.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar, Optional

import typer

from magcache_cli.cli.preflight import SEEDS, UNIT, Check, at_least, finite, one_of
from magcache_cli.types import BranchPolicy as _Policy
from magcache_cli.types import CompileMode as _CompileMode
from magcache_cli.types import Device as _Device
from magcache_cli.types import Dtype as _Dtype
from magcache_cli.types import RETENTION_RANGE, SKIP_DEFAULTS, SPEEDUP_RANGE, THRESHOLD_RANGE
from magcache_cli.types import Offload as _Offload


def choices(enum) -> str:
    """`a | b | c`: an enum's values for a help text (the enum is the one list of what is accepted)."""
    return " | ".join(enum.values())


THRESHOLD = finite(THRESHOLD_RANGE, example=SKIP_DEFAULTS["threshold"])
MAX_SKIP_STEPS = at_least(0, SKIP_DEFAULTS["max_skip_steps"])
RETENTION_RATIO = finite(RETENTION_RANGE, example=SKIP_DEFAULTS["retention_ratio"])

LOAD = "Model loading"
CALL = "Pipeline call"
SKIP = "Skipping"

Model = Annotated[Optional[str], typer.Option("--model", "-m", help="Hub id or local pipeline folder. Default: the bundled demo model (builtin:demo).", rich_help_panel=LOAD)]
Revision = Annotated[Optional[str], typer.Option(help="Hub revision (branch, tag or commit).", rich_help_panel=LOAD)]
Variant = Annotated[Optional[str], typer.Option(help="Weights variant, e.g. fp16.", rich_help_panel=LOAD)]
Dtype = Annotated[str, typer.Option(help=f"{choices(_Dtype)} (auto: bf16 on CUDA, fp32 on CPU).", rich_help_panel=LOAD), one_of(_Dtype.values())]
Device = Annotated[str, typer.Option(help=f"{choices(_Device)}.", rich_help_panel=LOAD), one_of(_Device.values())]
Offload = Annotated[str, typer.Option(help=f"{choices(_Offload)} CPU offload.", rich_help_panel=LOAD), one_of(_Offload.values())]
BranchPolicy = Annotated[str, typer.Option(help=f"{choices(_Policy)}. joint: skip a step only when every branch may skip (default). independent: each sequential branch decides alone.", rich_help_panel=SKIP), one_of(_Policy.values())]
AllowPickle = Annotated[bool, typer.Option("--allow-pickle", help="Allow non-safetensors weights (only for models you trust).", rich_help_panel=LOAD)]
TrustRemoteCode = Annotated[bool, typer.Option("--trust-remote-code", help="Allow custom pipeline code from the model repo.", rich_help_panel=LOAD)]
VaeTiling = Annotated[bool, typer.Option("--vae-tiling", help="Decode tiled: vae.enable_tiling() after loading (some VAEs need it, e.g. Allegro's).", rich_help_panel=LOAD)]
VaeSlicing = Annotated[bool, typer.Option("--vae-slicing", help="Decode one sample at a time: vae.enable_slicing() after loading.", rich_help_panel=LOAD)]
Compile = Annotated[str, typer.Option("--compile", help="torch.compile the transformer: none | repeated (its repeated blocks, fullgraph=True) | full (the whole model) | auto (the best that works: repeated where the transformer declares repeated blocks, else full). `--compile` alone means auto. The first call compiles; skipping adds no recompilation.", rich_help_panel=LOAD), one_of(_CompileMode.values())]

Prompt = Annotated[Optional[list[str]], typer.Option("--prompt", "-p", help="Prompt; repeat for several.", rich_help_panel=CALL)]
PromptsFile = Annotated[Optional[Path], typer.Option(help="File with one prompt per line (# comments allowed).", rich_help_panel=CALL)]
Seed = Annotated[Optional[list[int]], typer.Option("--seed", "-s", help="Seed; repeat for several. Every prompt runs with every seed.", rich_help_panel=CALL), SEEDS]
Steps = Annotated[Optional[int], typer.Option(help="Denoising steps.", rich_help_panel=CALL), at_least(1, 28)]
GuidanceScale = Annotated[Optional[float], typer.Option(help="Guidance scale.", rich_help_panel=CALL), finite(example=5.0)]
NegativePrompt = Annotated[Optional[str], typer.Option(help="Negative prompt.", rich_help_panel=CALL)]
Height = Annotated[Optional[int], typer.Option(help="Output height in pixels.", rich_help_panel=CALL), at_least(1, 1024)]
Width = Annotated[Optional[int], typer.Option(help="Output width in pixels.", rich_help_panel=CALL), at_least(1, 1024)]
NumFrames = Annotated[Optional[int], typer.Option(help="Frames, for video pipelines.", rich_help_panel=CALL), at_least(1, 49)]
Set = Annotated[Optional[list[str]], typer.Option("--set", help="Any other call argument as KEY=VALUE (VALUE parsed as YAML), e.g. --set true_cfg_scale=4, or KEY=@PATH for an image or video file (--set reference=@ref.png). Repeatable.", rich_help_panel=CALL)]

Threshold = Annotated[Optional[float], typer.Option(help="Accumulated-error threshold (0 disables skipping). Default: the profile's.", rich_help_panel=SKIP), THRESHOLD]
MaxSkipSteps = Annotated[Optional[int], typer.Option(help="Max consecutive skipped steps (K). Default: the profile's.", rich_help_panel=SKIP), MAX_SKIP_STEPS]
RetentionRatio = Annotated[Optional[float], typer.Option(help="Fraction of first steps never skipped. Default: the profile's.", rich_help_panel=SKIP), RETENTION_RATIO]
# calibrate has no profile yet: these set the defaults it writes into the new one
NewThreshold = Annotated[Optional[float], typer.Option("--threshold", help=f"The profile's default accumulated-error threshold (0 disables skipping). Default: {SKIP_DEFAULTS['threshold']:g}.", rich_help_panel=SKIP), THRESHOLD]
NewMaxSkipSteps = Annotated[Optional[int], typer.Option("--max-skip-steps", help=f"The profile's default max consecutive skipped steps (K). Default: {SKIP_DEFAULTS['max_skip_steps']}.", rich_help_panel=SKIP), MAX_SKIP_STEPS]
NewRetentionRatio = Annotated[Optional[float], typer.Option("--retention-ratio", help=f"The profile's default fraction of first steps never skipped. Default: {SKIP_DEFAULTS['retention_ratio']:g}.", rich_help_panel=SKIP), RETENTION_RATIO]
Forecast = Annotated[Optional[float], typer.Option(help="A in [0, 1]: a skipped step replays r_c + A·(t−c)/(c−p)·(r_c−r_p) from the branch's last two computed residuals instead of reusing r_c (0 = reuse). Default: the profile's (0 if unset).", rich_help_panel=SKIP), UNIT]
Speedup = Annotated[Optional[float], typer.Option("--speedup", help="Ask for a speed: skip settings chosen from the profile's curves (no extra run) so that the predicted transformer passes are at most 1/X of the full run, the most accurate predicted among those (docs/quality.md). --threshold / --max-skip-steps / --retention-ratio / --forecast given too are held. E.g. --speedup 2.", rich_help_panel=SKIP), finite(SPEEDUP_RANGE, example=2)]

Repeats = Annotated[int, typer.Option("--repeats", help="Wall time: interleaved timed repeats of uncached, cached and fewer steps (after a warm-up); medians are reported.", rich_help_panel=SKIP), at_least(1, 3)]
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

MODELS = "LoRA, quantization, single-file weights"
Lora = Annotated[Optional[list[str]], typer.Option("--lora", help="LoRA adapter as SOURCE[:SCALE]: a hub repo (owner/repo), one file in it (owner/repo/style.safetensors), a local .safetensors file or folder, or builtin:demo-bold; SCALE defaults to 1.0. Repeatable (each is adapter lora0, lora1, ...); recorded in the profile with its sha256. E.g. --lora ./bold.safetensors:0.8.", rich_help_panel=MODELS)]
FuseLora = Annotated[bool, typer.Option("--fuse-lora", help="Fuse the --lora adapters into the weights (faster calls; not with a quantized transformer).", rich_help_panel=MODELS)]
Quantize = Annotated[Optional[list[str]], typer.Option("--quantize", help="Quantize a component while loading, as [COMPONENT=]BACKEND:TYPE (default component: transformer): torchao:int8wo | torchao:int8dq | torchao:float8wo (needs --dtype bfloat16) | quanto:int8 | quanto:float8 | quanto:int4 | bnb:nf4 | bnb:fp4 | bnb:int8 (CUDA only). E.g. --quantize torchao:int8wo, --quantize text_encoder_2=bnb:nf4. Needs the backend's extra (pip install 'magcache-cli[torchao]'). Pre-quantized repos load as they are.", rich_help_panel=MODELS)]
TransformerFile = Annotated[Optional[str], typer.Option("--transformer-file", help="Load the transformer from one .safetensors or .gguf file (path or hub URL; original or diffusers layout; GGUF needs the gguf extra); its config and the rest of the pipeline come from --model. E.g. --transformer-file ./flux1-dev-Q8_0.gguf. Recorded in the profile with its sha256.", rich_help_panel=MODELS)]

ProfileModel = Annotated[Optional[str], typer.Option("--model", "-m", help="Load this model instead of the profile's.", rich_help_panel=LOAD)]


# ------------------------------------------------------------------------------------------ option groups


@dataclass
class Load:
    """How the pipeline is loaded and prepared (cli/job.py: `load`)."""

    model: Model = None
    revision: Revision = None
    variant: Variant = None
    dtype: Dtype = _Dtype.AUTO
    device: Device = _Device.AUTO
    offload: Offload = _Offload.NONE
    allow_pickle: AllowPickle = False
    trust_remote_code: TrustRemoteCode = False
    vae_tiling: VaeTiling = False
    vae_slicing: VaeSlicing = False
    compile_: Compile = _CompileMode.NONE
    context_parallel: ContextParallel = None
    lora: Lora = None
    fuse_lora: FuseLora = False
    quantize: Quantize = None
    transformer_file: TransformerFile = None

    def setup(self):
        """The LoRAs, quantization and single-file transformer asked for (runner/setups.ModelSetup)."""
        from magcache_cli.runner.setups import ModelSetup

        return ModelSetup.parse(self.lora, self.fuse_lora, self.quantize, self.transformer_file)

    HIDDEN: ClassVar[tuple[str, ...]] = ()  # fields a command does not offer (they keep their default)


@dataclass
class ProfileLoad(Load):
    """`run`, `tune`: the model defaults to the profile's."""

    model: ProfileModel = None


@dataclass
class TuneLoad(ProfileLoad):
    HIDDEN: ClassVar[tuple[str, ...]] = ("compile_",)


@dataclass
class VerifyLoad(ProfileLoad):
    """`profile verify`: one process, one uncompiled calibration run."""

    HIDDEN: ClassVar[tuple[str, ...]] = ("compile_", "context_parallel")


@dataclass
class Prompts:
    prompt: Prompt = None
    prompts_file: PromptsFile = None
    seed: Seed = None


@dataclass
class Call:
    """Pipeline call arguments; what is not given comes from the profile's calibration (run, tune)."""

    steps: Steps = None
    guidance_scale: GuidanceScale = None
    negative_prompt: NegativePrompt = None
    height: Height = None
    width: Width = None
    num_frames: NumFrames = None
    set_: Set = None


@dataclass
class Inputs:
    """File inputs, another pipeline class, extra components (cli/inputs.py: `gather`)."""

    image: Image = None
    mask_image: MaskImage = None
    control_image: ControlImage = None
    video: Video = None
    strength: Strength = None
    pipeline: Pipeline = None
    component: Component = None


@dataclass
class Skip:
    """`run`'s skip settings; None: the profile's default."""

    threshold: Threshold = None
    max_skip_steps: MaxSkipSteps = None
    retention_ratio: RetentionRatio = None
    forecast: Forecast = None
    branch_policy: BranchPolicy = _Policy.JOINT
    speedup: Speedup = None


@dataclass
class NewDefaults:
    """`calibrate`: the skip settings written as the new profile's defaults (None: the built-in default)."""

    threshold: NewThreshold = None
    max_skip_steps: NewMaxSkipSteps = None
    retention_ratio: NewRetentionRatio = None

    def given(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


# ------------------------------------------------------------------------------------------ commands


def flag_of(name: str, annotation) -> str:
    """The `--flag` an option is given with: its first long name, else typer's spelling of `name`."""
    for meta in getattr(annotation, "__metadata__", ()):
        if isinstance(meta, typer.models.OptionInfo):
            names = [meta.default, *(meta.param_decls or ())]
            return next((n for n in names if isinstance(n, str) and n.startswith("--")),
                        "--" + name.replace("_", "-"))
    return "--" + name.replace("_", "-")


def _checks(annotation) -> list[Check]:
    return [m for m in getattr(annotation, "__metadata__", ()) if isinstance(m, Check)]


def _offered(cls) -> list[dataclasses.Field]:
    """A group's fields the command line offers (all but its `HIDDEN`)."""
    return [f for f in dataclasses.fields(cls) if f.name not in getattr(cls, "HIDDEN", ())]


def _spread(cls) -> list[inspect.Parameter]:
    hints = typing.get_type_hints(cls, include_extras=True)
    return [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name])
            for f in _offered(cls)]


def command(fn):
    """Typer sees `fn` with each group parameter (annotated with a dataclass above) spread into its fields'
    options, in place; `fn` is called with the groups rebuilt and every given value checked (`Check`)."""
    hints = typing.get_type_hints(fn, include_extras=True)
    groups, flat = {}, []
    for name in inspect.signature(fn).parameters:
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            groups[name] = kind
            flat += _spread(kind)
        else:
            default = inspect.signature(fn).parameters[name].default
            flat.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind))
    twice = sorted({p.name for p in flat if [q.name for q in flat].count(p.name) > 1})
    if twice:  # two groups (or a group and the command) declare the same option
        raise TypeError(f"{fn.__name__}: {', '.join(twice)} declared more than once")
    rules = [(p.name, flag_of(p.name, p.annotation), _checks(p.annotation)) for p in flat]

    @functools.wraps(fn)
    def wrapper(**values):
        for name, flag, checks in rules:
            for check in checks if values[name] is not None else ():
                check(flag, values[name])
        for name, kind in groups.items():
            values[name] = kind(**{f.name: values.pop(f.name) for f in _offered(kind)})
        return fn(**values)

    wrapper.__signature__ = inspect.Signature(flat, return_annotation=None)
    wrapper.__annotations__ = {p.name: p.annotation for p in flat}
    return wrapper
