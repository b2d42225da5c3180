"""Tiny random-weight diffusers pipelines, built offline, for tests and demos.

`build_tiny_pipeline(family, out_dir, seed)` creates every component of a pipeline from small
configs (tokenizers, text encoders, VAE, denoiser, scheduler), saves it with
`save_pretrained(out_dir, safe_serialization=True)` and returns `out_dir`. The result loads back
with `DiffusionPipeline.from_pretrained(out_dir)` with `HF_HUB_OFFLINE=1` and runs on CPU in well
under two seconds per call (4 steps, one thread).

Design notes
------------
* Tokenizers are the real transformers classes (CLIPTokenizer, T5TokenizerFast, Qwen2TokenizerFast,
  GemmaTokenizerFast, LlamaTokenizerFast) built from an in-memory *character-level* vocabulary
  (no merges), so ids are identical across processes and machines. Nothing is downloaded and
  `train_new_from_iterator` is never used.
* Text encoders are tiny configs of the real model classes (CLIPTextModel[WithProjection],
  T5EncoderModel, UMT5EncoderModel, Qwen2_5_VLForConditionalGeneration, Gemma2Model, LlamaModel,
  LlamaForCausalLM, GlmModel). CogView4 / HiDream's Llama-3 tokenizers are plain
  PreTrainedTokenizerFast objects over the same kind of character-level byte-level BPE.
* DiTs that zero-initialise modulation / gate / output layers would make a random tiny model's
  blocks identity maps (residual ratio 0 or NaN). After building the denoiser, every parameter
  tensor that is entirely zero is re-drawn from N(0, 0.1^2) with a `torch.Generator` seeded from
  `seed` and `zlib.crc32(parameter_name)`, so the weights (and the saved bytes) are deterministic.
  (With diffusers 0.42 constructors this only hits a few norm biases - wan, cogvideox, hunyuanvideo,
  the sdxl UNet - and mochi's pos_frequencies; the guard stays for models that do zero-init. lumina-next's
  `pad_token` is created with torch.empty, so its builder zeroes it first.) All
  other initialisation is seeded with `torch.manual_seed(seed)` before each component.
* The number of text tokens the denoiser sees differs from the number of image tokens in every
  family (`TinyFamily.text_tokens` / `TinyFamily.image_tokens`, per transformer call, batch 1,
  prompt "a cat"; some pipelines do not pad text, see each family's notes).

Guidance modes (read in the diffusers 0.42.1 pipeline sources, checked by tests/test_tiny.py)
-------------------------------------------------------------------------------------------
* ``sequential-named``: one denoiser call per branch, cond first, wrapped in
  ``transformer.cache_context("cond")`` / ``cache_context("uncond")``: flux (true CFG), wan,
  qwenimage (true CFG), hunyuanvideo-truecfg, cogview4.
* ``sequential-unnamed``: one call per branch, cond first, no cache_context: chroma, lumina2.
* ``batched``: one call on ``torch.cat([negative, positive])``: sd3, sdxl (UNet), pixart, sana,
  auraflow, hidream (no cache_context); cogvideox, ltx, mochi (inside ``cache_context("cond_uncond")``).
* ``none``: one call per step: flux-nocfg, hunyuanvideo (guidance-distilled; both inside
  ``cache_context("cond")``).

Modules, by family (each holds its builders and its `FAMILIES` entries, the notes next to the code)
------------------------------------------------------------------------------------------------
* ``flux.py``: flux, flux-nocfg, chroma, flux2, flux2-klein, ovis-image, bria, bria-fibo
* ``sd3.py``: sd3, sdxl (the UNet), auraflow, hidream
* ``pixart.py``: pixart, pixart-alpha, sana, sana-sprint, sana-video
* ``lumina.py``: lumina2, lumina-next, zimage
* ``qwen.py``: qwenimage, krea2
* ``hunyuan.py``: hunyuandit, hunyuanimage, hunyuanvideo, hunyuanvideo-truecfg, hunyuanvideo15
* ``cogview.py``: cogview3plus, cogview4, cogvideox
* ``wan.py``: wan, skyreels-v2, anyflow, helios
* ``ltx.py``: ltx, ltx2 (video + audio)
* ``other_image.py``: kandinsky5-t2i, ernie-image, ideogram4, prx
* ``other_video.py``: mochi, latte, allegro (loads with `vae_tiling=True`, see `TinyFamily.load`), easyanimate,
  motif-video
* ``conditioned.py``: image-conditioned workflows (Wan image-to-video, a Flux ControlNet, sample images)
* shared pieces: ``parts.py`` (tokenizers, CLIP / T5 encoders, VAEs, schedulers, the zero-weight guard),
  ``encoders.py`` (Qwen-VL, Qwen3, Mistral 3, ByT5 text encoders and chat templates), ``family.py``
  (`TinyFamily`).

`FAMILIES` keeps one order (`_ORDER`) whatever the module. Not built (see `SKIPPED_FAMILIES`): kandinsky5
text-to-video and the families that need torchvision or hub-only models.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from . import cogview, flux, hunyuan, ltx, lumina, other_image, other_video, pixart, qwen, sd3, wan
from .family import TinyFamily, _DOUBLE_SINGLE, _NEG  # noqa: F401

# Every builder stays importable from the package (`from magcache_cli.testing.tiny import _build_flux`).
from .flux import (  # noqa: F401
    _build_bria,
    _build_bria_fibo,
    _build_chroma,
    _build_flux,
    _build_flux2,
    _build_flux2_klein,
    _build_ovis_image,
)
from .sd3 import _build_auraflow, _build_hidream, _build_sd3, _build_sdxl  # noqa: F401
from .pixart import (  # noqa: F401
    _build_pixart,
    _build_pixart_alpha,
    _build_sana,
    _build_sana_sprint,
    _build_sana_video,
)
from .lumina import _build_lumina2, _build_lumina_next, _build_zimage  # noqa: F401
from .qwen import _build_krea2, _build_qwenimage  # noqa: F401
from .hunyuan import (  # noqa: F401
    _build_hunyuandit,
    _build_hunyuanimage,
    _build_hunyuanvideo,
    _build_hunyuanvideo15,
)
from .cogview import _build_cogvideox, _build_cogview3plus, _build_cogview4  # noqa: F401
from .wan import _build_anyflow, _build_helios, _build_skyreels_v2, _build_wan  # noqa: F401
from .ltx import _build_ltx, _build_ltx2  # noqa: F401
from .other_image import (  # noqa: F401
    _build_ernie_image,
    _build_ideogram4,
    _build_kandinsky5_t2i,
    _build_prx,
)
from .other_video import (  # noqa: F401
    _build_allegro,
    _build_easyanimate,
    _build_latte,
    _build_mochi,
    _build_motif_video,
)

__all__ = ["FAMILIES", "SKIPPED_FAMILIES", "TinyFamily", "build_tiny_pipeline"]

#: The registry order (tests and benchmarks iterate FAMILIES in it): the core families, the stretch families,
#: then issue 13's.
_ORDER = (
    "flux", "flux-nocfg", "sd3", "wan", "qwenimage", "cogvideox", "hunyuanvideo", "hunyuanvideo-truecfg", "chroma",
    "lumina2", "sdxl", "pixart", "sana", "auraflow", "ltx", "mochi", "cogview4", "hidream", "flux2", "flux2-klein",
    "zimage", "bria", "pixart-alpha", "hunyuandit", "cogview3plus", "lumina-next", "ovis-image", "prx", "krea2",
    "sana-video", "skyreels-v2", "anyflow", "easyanimate", "bria-fibo", "helios", "motif-video", "ltx2",
    "kandinsky5-t2i", "hunyuanimage", "ernie-image", "sana-sprint", "ideogram4", "latte", "allegro",
    "hunyuanvideo15",
)

FAMILIES: dict[str, TinyFamily] = {}

#: Stretch families that are not built, with the reason.
SKIPPED_FAMILIES: dict[str, str] = {
    "kandinsky5": "Kandinsky5T2VPipeline is not built: its tokenizer is a Qwen2VLProcessor, which needs "
                  "Qwen2VLVideoProcessor, which needs torchvision (not installed here). Kandinsky5T2IPipeline "
                  "is built ('kandinsky5-t2i'), with the processor's own Qwen2 tokenizer standing in for it.",
}


def _register(fam: TinyFamily) -> None:
    FAMILIES[fam.name] = fam


_MODULES = (flux, sd3, pixart, lumina, qwen, hunyuan, cogview, wan, ltx, other_image, other_video)
_BY_NAME = {fam.name: fam for module in _MODULES for fam in module.FAMILIES}
if sorted(_BY_NAME) != sorted(_ORDER):
    raise RuntimeError(f"tiny families missing from _ORDER or listed twice: {sorted(set(_BY_NAME) ^ set(_ORDER))}")
for _name in _ORDER:
    _register(_BY_NAME[_name])

#: Issue 13's families as TinyFamily keyword arguments, as the former `more_families.MORE_FAMILIES` listed them.
MORE_FAMILIES: list[dict] = [
    {f.name: getattr(FAMILIES[name], f.name) for f in fields(TinyFamily) if f.name != "load"}
    for name in _ORDER[_ORDER.index("flux2"):_ORDER.index("ltx2") + 1]
]

# Families that cannot be built offline here (issue 13), with the reason.
_TORCHVISION = "needs torchvision (the PyPI wheel for torch 2.13 does not load against the CPU build)"
MORE_SKIPPED: dict[str, str] = {
    "qwenimage21": f"QwenImage21Pipeline's processor is a Qwen3VLProcessor; its video processor {_TORCHVISION}.",
    "longcat-image": f"LongCatImagePipeline's text_processor is a Qwen2VLProcessor; its video processor "
                     f"{_TORCHVISION}.",
    "nucleusmoe-image": f"NucleusMoEImagePipeline's processor is a Qwen3VLProcessor; its video processor "
                        f"{_TORCHVISION}.",
    "kandinsky6": f"Kandinsky6TI2VAPipeline's tokenizer is a Qwen2_5_VLProcessor; its video processor {_TORCHVISION}.",
    "bria-fibo2": f"BriaFibo2Pipeline's processor is a Qwen3VLProcessor; its video processor {_TORCHVISION}.",
    "omnigen": "OmniGenPipeline's multimodal processor builds torchvision transforms in __init__ (not installed).",
    "cosmos": "Cosmos pipelines loaded without a safety checker build CosmosSafetyChecker(), which needs the "
              "cosmos_guardrail package, whose guardrail models come from the hub.",
}
SKIPPED_FAMILIES.update(MORE_SKIPPED)


def build_tiny_pipeline(family: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Build the tiny pipeline `family`, save it to `out_dir` (safetensors) and return `out_dir`."""
    if family not in FAMILIES:
        known = ", ".join(sorted(FAMILIES))
        raise KeyError(f"unknown tiny family {family!r}; known: {known}")
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    builder = FAMILIES[family].builder
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe = builder(seed)
    pipe.save_pretrained(str(out), safe_serialization=True)
    return out
