"""One table from every failure to `Error: <what> — <what to do next>`, in the CLI's words.

The library raises typed errors in its own language: parameters and fields in backticks (`overwrite=True`,
`num_inference_steps`). Torch, diffusers, the hub and the OS raise theirs. The boundary (`app.MagCacheGroup`)
hands whatever escaped a command to `explain`, which walks the exception and its causes and takes the first
row of `RULES` that matches any of them: specific causes (CUDA out of memory, a gated repo, a full disk)
come before the generic rows, so a `LoadError` wrapping a `GatedRepoError` still says to set HF_TOKEN.
`to_cli` turns the library's parameter names into this CLI's flags (`FLAGS`). A new failure gets a row
here, not a `try` in a command.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from magcache_cli.errors import MagCacheError

# Library parameter / field names -> the option that sets them. `name=True` becomes the bare flag.
FLAGS = {
    "prompts": "--prompt", "prompt": "--prompt", "prompts_file": "--prompts-file", "seeds": "--seed",
    "seed": "--seed", "num_inference_steps": "--steps", "steps": "--steps", "guidance_scale": "--guidance-scale",
    "negative_prompt": "--negative-prompt", "height": "--height", "width": "--width", "num_frames": "--num-frames",
    "call_args": "--set", "threshold": "--threshold", "max_skip_steps": "--max-skip-steps",
    "retention_ratio": "--retention-ratio", "policy": "--branch-policy", "branch_policy": "--branch-policy",
    "overwrite": "--force", "force": "--force", "mode": "--compile", "compile": "--compile", "device": "--device",
    "dtype": "--dtype", "offload": "--offload", "allow_pickle": "--allow-pickle",
    "trust_remote_code": "--trust-remote-code", "model": "--model", "model_id": "--model", "revision": "--revision",
    "variant": "--variant", "min_psnr": "--min-psnr", "min_ssim": "--min-ssim", "max_lpips": "--max-lpips",
    "repeats": "--repeats", "ratios": "--ratios", "ratios_file": "--ratios-file", "interleaved": "--interleaved",
    "uncond_first": "--uncond-first", "pad": "--pad", "guidance_mode": "--guidance-mode", "branch": "--branch",
    "keep_partial": "--keep-partial", "vae_tiling": "--vae-tiling", "vae_slicing": "--vae-slicing",
}
_PARAM = re.compile(r"`([a-z][a-z0-9_]*)(?:=([^`\s]*))?`")

# Library errors that wrap a foreign failure (the hub's, diffusers'): their cause is explained first.
WRAPPERS = ("LoadError",)
DEBUG_HINT = "run again with --debug for the traceback, and report it if it looks like a bug"


def to_cli(text: str | None) -> str | None:
    """`overwrite=True` -> --force, `mode=full` -> --compile full, `num_inference_steps` -> --steps; other
    backticked words are left as they are."""
    if not text:
        return text

    def flag(m: re.Match) -> str:
        name, value = m.group(1), m.group(2)
        if name not in FLAGS:
            return m.group(0)
        if value is None or value == "True":
            return FLAGS[name]
        return f"{FLAGS[name]} {value.strip(chr(39) + chr(34))}"

    return _PARAM.sub(flag, text)


@dataclass(frozen=True)
class Explained:
    what: str
    next: str | None
    exit_code: int = 1

    def line(self) -> str:
        return f"{self.what} — {self.next}" if self.next else self.what


@dataclass(frozen=True)
class Rule:
    """`matches(exc)` says whether this row explains `exc`; `explain(exc)` words it."""

    name: str
    matches: Callable[[BaseException], bool]
    explain: Callable[[BaseException], Explained]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def _named(exc: BaseException, *names: str) -> bool:
    """Whether `exc`'s class or a base has one of these names: no need to import torch or the hub here."""
    return any(c.__name__ in names for c in type(exc).__mro__)


def causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then what caused it (`raise ... from`), then what it happened during, without repeats."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or (None if cur.__suppress_context__ else cur.__context__)


def _repo(exc: BaseException) -> str:
    if getattr(exc, "repo_id", None):
        return f" {exc.repo_id}"
    url = str(getattr(getattr(exc, "response", None), "url", "") or "")
    repo = url.split("/api/models/")[-1].split("/resolve/")[0].split("/revision/")[0] if "/api/models/" in url else ""
    return f" {repo}" if repo else ""


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _status(exc: BaseException) -> int:
    return int(getattr(getattr(exc, "response", None), "status_code", 0) or 0)


def _oom(exc: BaseException) -> bool:
    return _named(exc, "OutOfMemoryError") or (isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def _errno(*codes: int) -> Callable[[BaseException], bool]:
    return lambda e: isinstance(e, OSError) and e.errno in codes


def _file(exc: BaseException) -> str:
    name = getattr(exc, "filename", None)
    return f": {name}" if name else ""


def _in_pipeline_call(exc: BaseException) -> bool:
    """A ValueError/TypeError raised by a diffusers pipeline's own argument checks (`check_inputs` & co.)."""
    if not isinstance(exc, (ValueError, TypeError)):
        return False
    tb = exc.__traceback__
    while tb is not None:
        if "/diffusers/pipelines/" in tb.tb_frame.f_code.co_filename.replace("\\", "/"):
            return True
        tb = tb.tb_next
    return False


def _library(exc: BaseException) -> Explained:
    assert isinstance(exc, MagCacheError)
    return Explained(to_cli(exc.message) or type(exc).__name__, to_cli(exc.hint))


def _partial(e: BaseException) -> Explained:
    saved = getattr(e, "saved_to", None)
    done = getattr(e, "finished", 0)
    what = f"interrupted after {done} of {getattr(e, 'total', '?')} runs"
    if saved:
        return Explained(f"{what}; the {done} finished runs were saved to {saved} (--keep-partial)",
                         "calibrate again without interrupting to measure all of them", 130)
    return Explained(what, "nothing was written", 130)


RULES: list[Rule] = [
    Rule("interrupted-calibration", lambda e: _named(e, "CalibrationInterrupted"), _partial),
    Rule("interrupted", lambda e: isinstance(e, KeyboardInterrupt),
         lambda e: Explained("interrupted", "nothing of the unfinished work was written; files written before are "
                             "complete", 130)),
    # a library error that already saved the result elsewhere says where: that beats any cause
    Rule("recovered", lambda e: isinstance(e, MagCacheError) and getattr(e, "recovered", None) is not None, _library),
    Rule("cuda-oom", _oom,
         lambda e: Explained("the GPU ran out of memory",
                             "try --offload model (or sequential), --dtype bfloat16 or float16, a smaller "
                             "--height/--width, or fewer --num-frames")),
    Rule("memory", lambda e: isinstance(e, MemoryError),
         lambda e: Explained("out of memory", "try --dtype bfloat16, a smaller --height/--width, or fewer --num-frames")),
    Rule("gated", lambda e: _named(e, "GatedRepoError"),
         lambda e: Explained(f"the model repo{_repo(e)} is gated: it needs an accepted licence and a token",
                             "accept the terms on the model's hub page, then set HF_TOKEN (or run `hf auth login`)")),
    Rule("unauthorised", lambda e: _named(e, "HfHubHTTPError") and _status(e) in (401, 403),
         lambda e: Explained(f"the hub refused access{_repo(e)} (HTTP {_status(e)})",
                             "set HF_TOKEN to a token that can read this repo (or run `hf auth login`)")),
    Rule("repo-not-found", lambda e: _named(e, "RepositoryNotFoundError"),
         lambda e: Explained(f"no such model repo on the hub{_repo(e)}",
                             "check the --model id (a private repo also needs HF_TOKEN), or pass a local pipeline folder")),
    Rule("revision-not-found", lambda e: _named(e, "RevisionNotFoundError"),
         lambda e: Explained("the hub has no such revision of this model", "check --revision (a branch, tag or commit)")),
    Rule("offline", lambda e: _named(e, "OfflineModeIsEnabled", "LocalEntryNotFoundError") and _offline(),
         lambda e: Explained("the model is not in the local cache and offline mode is on (HF_HUB_OFFLINE=1)",
                             "download it once with network access (unset HF_HUB_OFFLINE), or pass a local pipeline folder")),
    Rule("network", lambda e: _named(e, "LocalEntryNotFoundError", "ConnectError", "ConnectionError", "ConnectTimeout",
                                     "ReadTimeout", "NameResolutionError") or _errno(errno.ENETUNREACH, errno.EHOSTUNREACH)(e),
         lambda e: Explained("the Hugging Face hub cannot be reached and the model is not in the local cache",
                             "check your network or proxy (HTTPS_PROXY); HF_HUB_OFFLINE=1 uses only the local cache")),
    Rule("disk-full", _errno(errno.ENOSPC, errno.EDQUOT),
         lambda e: Explained(f"the disk is full{_file(e)}",
                             "free some space, or write elsewhere (--out / --output; HF_HOME for model downloads)")),
    Rule("read-only", _errno(errno.EROFS),
         lambda e: Explained(f"read-only file system{_file(e)}", "write to another folder")),
    Rule("permission", lambda e: isinstance(e, PermissionError),
         lambda e: Explained(f"permission denied{_file(e)}", "write to a folder you own, or fix the permissions")),
    Rule("magcache", lambda e: isinstance(e, MagCacheError), _library),
    Rule("pipeline-call", _in_pipeline_call,
         lambda e: Explained(f"the pipeline refused the call: {_first_line(e)}",
                             "change the call options it names (--steps, --height/--width, --num-frames, --set ...)")),
    Rule("vae-tiling", lambda e: isinstance(e, NotImplementedError) and "tiling" in str(e).lower(),
         lambda e: Explained(f"the VAE cannot decode this way: {_first_line(e)}",
                             "pass --vae-tiling (this VAE decodes only tiled, e.g. Allegro's)")),
    Rule("os", lambda e: isinstance(e, OSError),
         lambda e: Explained(f"{e.strerror or _first_line(e)}{_file(e)}", DEBUG_HINT)),
]


def add_note(exc: BaseException, note: str) -> None:
    """Something the error line should also say (PEP 678 notes; `explain` appends them)."""
    notes = getattr(exc, "__notes__", None)
    if not isinstance(notes, list):
        notes = []
        try:
            exc.__notes__ = notes
        except AttributeError:  # pragma: no cover - an exception type without a __dict__
            return
    notes.append(note)


def _with_notes(explained: Explained, exc: BaseException) -> Explained:
    notes = [n for n in getattr(exc, "__notes__", None) or [] if isinstance(n, str)]
    if not notes:
        return explained
    return Explained(f"{explained.what} ({'; '.join(notes)})", explained.next, explained.exit_code)


def explain(exc: BaseException) -> Explained:
    """The line for `exc`: the first row of `RULES` that matches it or one of its causes."""
    chain = list(causes(exc))
    if isinstance(exc, MagCacheError) and type(exc).__name__ not in WRAPPERS:
        chain = chain[:1]  # our own message stands, whatever it was raised from
    for rule in RULES:
        for e in chain:
            if rule.matches(e):
                return _with_notes(rule.explain(e), exc)
    return _with_notes(Explained(f"{type(exc).__name__}: {_first_line(exc)}", DEBUG_HINT), exc)
