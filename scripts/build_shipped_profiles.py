"""Write `profiles/<curve id>.yaml` for every published curve in reference-ratios.json that fits schema v1.

    .venv/bin/python scripts/build_shipped_profiles.py [REFERENCE_JSON] [--out-dir profiles]

REFERENCE_JSON defaults to ../shared/reference-ratios.json relative to the repository root. The curves are
converted by `magcache_cli.profile.convert.profile_from_curves`, the function behind `magcache profile
import`, with the recommended defaults recorded in the JSON. Nothing is re-measured. Rerunning gives
byte-identical files. Every curve id in the JSON must be listed below, as built or as skipped with a reason,
so a new curve forces a decision.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from magcache_cli.profile.convert import profile_from_curves  # noqa: E402
from magcache_cli.profile.io import save_profile  # noqa: E402

DEFAULT_JSON = ROOT.parent / "shared" / "reference-ratios.json"

# curve id -> (model id to load, or None for the JSON's model; pipeline class; transformer class).
# Model ids: the diffusers-format repo of the model the curve was published for, where the JSON names the
# original-format repo. Class names all exist in diffusers 0.42.
_FLUX = ("FluxPipeline", "FluxTransformer2DModel")
_KONTEXT = ("FluxKontextPipeline", "FluxTransformer2DModel")
_QWEN = ("QwenImagePipeline", "QwenImageTransformer2DModel")
_HUNYUAN = ("HunyuanVideoPipeline", "HunyuanVideoTransformer3DModel")
_HUNYUAN15 = ("HunyuanVideo15Pipeline", "HunyuanVideo15Transformer3DModel")
_WAN_T2V = ("WanPipeline", "WanTransformer3DModel")
_WAN_I2V = ("WanImageToVideoPipeline", "WanTransformer3DModel")
_WAN_VACE = ("WanVACEPipeline", "WanVACETransformer3DModel")
_FRAMEPACK = ("HunyuanVideoFramepackPipeline", "HunyuanVideoFramepackTransformer3DModel")
BUILD = {
    "flux1-dev": (None, *_FLUX),
    "flux1-kontext-dev": (None, *_KONTEXT),
    "flux1-kontext-dev-comfyui": (None, *_KONTEXT),
    "chroma-comfyui": (None, "ChromaPipeline", "ChromaTransformer2DModel"),
    "qwen-image": (None, *_QWEN),
    "qwen-image-comfyui": (None, *_QWEN),
    "qwen-image-edit": (None, "QwenImageEditPipeline", "QwenImageTransformer2DModel"),
    "hunyuanvideo-720p": ("hunyuanvideo-community/HunyuanVideo", *_HUNYUAN),
    "hunyuanvideo-544p": ("hunyuanvideo-community/HunyuanVideo", *_HUNYUAN),
    "hunyuanvideo-1.5-720p-t2v-20steps-comfyui": ("hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-720p_t2v", *_HUNYUAN15),
    "hunyuanvideo-1.5-720p-t2v-40steps-comfyui": ("hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-720p_t2v", *_HUNYUAN15),
    "wan2.1-t2v-1.3b": ("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", *_WAN_T2V),
    "wan2.1-t2v-14b": ("Wan-AI/Wan2.1-T2V-14B-Diffusers", *_WAN_T2V),
    "wan2.1-i2v-14b-480p": ("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", *_WAN_I2V),
    "wan2.1-i2v-14b-720p": ("Wan-AI/Wan2.1-I2V-14B-720P-Diffusers", *_WAN_I2V),
    "wan2.1-vace-1.3b": ("Wan-AI/Wan2.1-VACE-1.3B-diffusers", *_WAN_VACE),
    "wan2.1-vace-14b": ("Wan-AI/Wan2.1-VACE-14B-diffusers", *_WAN_VACE),
    "wan2.2-ti2v-5b-t2v": ("Wan-AI/Wan2.2-TI2V-5B-Diffusers", *_WAN_T2V),
    "wan2.2-ti2v-5b-i2v": ("Wan-AI/Wan2.2-TI2V-5B-Diffusers", *_WAN_I2V),
    "framepack": (None, *_FRAMEPACK),
    "framepack-f1": (None, *_FRAMEPACK),
}
SKIP = {
    "wan2.2-t2v-a14b": "two experts (transformer, transformer_2) share one published curve with the expert switch "
                       "inside it and retention applied per expert: needs the per-denoiser branch layout",
    "wan2.2-i2v-a14b": "two experts (transformer, transformer_2) share one published curve with the expert switch "
                       "inside it and retention applied per expert: needs the per-denoiser branch layout",
    "omnigen2-t2i": "OmniGen2 runs its own pipeline code, not a diffusers pipeline class",
    "omnigen2-edit": "OmniGen2 runs its own pipeline code, not a diffusers pipeline class",
    "opensora-v1.2-eval": "paper evaluation script: the values are used square-rooted, the step-0 pad was added by "
                          "the extractor, and Open-Sora is not a diffusers pipeline",
    "wan2.1-t2v-1.3b-paper-eval": "paper evaluation script, superseded by wan2.1-t2v-1.3b: the values are used "
                                  "square-rooted and the leading pads were added by the extractor",
}


def source_text(entry: dict, model_id: str) -> str:
    """Where the numbers come from: repo, commit, file and lines, defaults' origin; not re-measured here."""
    s, d = entry["source"], entry["defaults"]
    first, last = s["lines"]
    lines = f"L{first}" if first == last else f"L{first}-{last}"
    parts = [f"published by the MagCache authors in {s['repo']}@{s['commit']} {s['path']} {lines}"
             + (f" (key {s['key']})" if "key" in s else "")]
    if "condition" in s:
        parts.append(f"selected when {s['condition']}")
    if "pad_added_at" in s:
        parts.append(f"step-0 pads added by the source at {s['pad_added_at']}")
    parts.append(f"calibrated at: {s['calibrated_at']}")
    parts.append(f"defaults: {d['origin']}")
    if model_id != entry["model"]:
        parts.append(f"curve published for {entry['model']}; model.id is its diffusers-format repo")
    parts.append(f"extracted as entry {entry['id']} of reference-ratios.json")
    parts.append("not re-measured here")
    return "; ".join(parts)


def build(entry: dict):
    model_id, pipeline_class, transformer_class = BUILD[entry["id"]]
    model_id = model_id or entry["model"]
    mode = entry["cfg"].split()[0]
    for label, curve in entry["branches"].items():
        if len(curve) != entry["steps"]:
            raise SystemExit(f"{entry['id']}: branch {label} has {len(curve)} values, not {entry['steps']}")
    d = entry["defaults"]
    return profile_from_curves(
        entry["branches"], model=model_id, pipeline_class=pipeline_class, transformer_class=transformer_class,
        guidance_mode=mode, threshold=d["threshold"], max_skip_steps=d["max_skip_steps"],
        retention_ratio=d["retention_ratio"], source=source_text(entry, model_id))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reference_json", nargs="?", type=Path, default=DEFAULT_JSON)
    ap.add_argument("--out-dir", type=Path, default=ROOT / "profiles")
    args = ap.parse_args(argv)
    curves = json.loads(args.reference_json.read_text(encoding="utf-8"))["curves"]
    unknown = [c["id"] for c in curves if c["id"] not in BUILD and c["id"] not in SKIP]
    if unknown:
        raise SystemExit(f"curve ids neither built nor skipped: {', '.join(unknown)} (add them to BUILD or SKIP)")
    for entry in curves:
        if entry["id"] in SKIP:
            print(f"skipped {entry['id']}: {SKIP[entry['id']]}")
            continue
        path = save_profile(build(entry), args.out_dir / f"{entry['id']}.yaml", overwrite=True)
        print(f"wrote   {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
