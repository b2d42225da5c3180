"""Writing results: atomic (no partial file on failure or Ctrl-C), no stray `.mp4` when the MP4 writer
fails, recovery files when the target cannot be written, and `--compile auto`'s choice per transformer."""

from __future__ import annotations

import errno
import sys
import types
from pathlib import Path

import pytest
from PIL import Image

from magcache_cli.runner import outputs
from magcache_cli.runner.recovery import (
    RecoveredError,
    atomic_write,
    recovery_paths,
    write_or_recover,
)


def video(frames: int = 3):
    return types.SimpleNamespace(frames=[[Image.new("RGB", (8, 8), (40 * i, 0, 0)) for i in range(frames)]])


def test_interrupted_write_leaves_no_partial_file_and_keeps_the_old_one(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")

    def half_then_ctrl_c(tmp: Path) -> None:
        tmp.write_bytes(b"half a pn")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, half_then_ctrl_c)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_video_without_an_mp4_writer_leaves_no_stray_mp4(tmp_path, monkeypatch):
    # imageio is installed but has no ffmpeg backend: it creates the file, writes a few bytes, then fails
    def imwrite(path, frames, fps):
        Path(path).write_bytes(b"\x00" * 8)
        raise RuntimeError("Could not find a backend to open the file with iomode 'w'")

    fake = types.ModuleType("imageio.v3")
    fake.imwrite = imwrite
    monkeypatch.setitem(sys.modules, "imageio", types.ModuleType("imageio"))
    monkeypatch.setitem(sys.modules, "imageio.v3", fake)
    written = outputs.save(video(3), tmp_path / "clip.mp4")
    assert written == tmp_path / "clip.gif" and Image.open(written).n_frames == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.gif"]


def test_video_disk_full_is_not_hidden_by_the_gif_fallback(tmp_path, monkeypatch):
    def imwrite(path, frames, fps):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    fake = types.ModuleType("imageio.v3")
    fake.imwrite = imwrite
    monkeypatch.setitem(sys.modules, "imageio", types.ModuleType("imageio"))
    monkeypatch.setitem(sys.modules, "imageio.v3", fake)
    with pytest.raises(OSError, match="No space left"):
        outputs.save(video(), tmp_path / "clip.mp4")
    assert not list(tmp_path.iterdir())


def test_unwritable_target_goes_to_the_first_recovery_path_that_works(tmp_path):
    target = tmp_path / "sub" / "p.yaml"
    beside, in_tmp = recovery_paths(target)
    assert beside.parent == target.parent and beside.name.startswith("p.recovered-") and beside.suffix == ".yaml"

    def write(path: Path) -> Path:
        if path == target:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return atomic_write(path, lambda tmp: tmp.write_text("data"))

    with pytest.raises(RecoveredError) as e:
        write_or_recover(target, write)
    assert e.value.recovered == beside and beside.read_text() == "data"
    assert e.value.why == "No space left on device" and str(beside) in str(e.value)

    def only_tmp(path: Path) -> Path:
        if path != in_tmp:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return atomic_write(path, lambda tmp: tmp.write_text("data"))

    with pytest.raises(RecoveredError) as e:
        write_or_recover(target, only_tmp)
    assert e.value.recovered == in_tmp
    in_tmp.unlink()


def test_nothing_writable_keeps_the_first_error(tmp_path):
    def never(path: Path) -> Path:
        raise OSError(errno.EIO, "Input/output error", str(path))

    with pytest.raises(OSError, match="Input/output error"):
        write_or_recover(tmp_path / "x.png", never)


class _Model:
    def __init__(self, repeated):
        self._repeated_blocks = repeated
        self.calls = []

    def compile_repeated_blocks(self, **kw):
        if self._repeated_blocks == ["Missing"]:
            raise ValueError("no submodule of class Missing")
        self.calls.append("repeated")

    def compile(self, **kw):
        self.calls.append("full")


@pytest.mark.parametrize("repeated, expect", [(["Block"], "repeated"), ([], "full"), (["Missing"], "full")])
def test_compile_auto_picks_the_best_that_works(monkeypatch, repeated, expect):
    from magcache_cli.core import compile as compile_mod

    model = _Model(repeated)
    pipe = types.SimpleNamespace(transformer=model)
    monkeypatch.setattr(compile_mod, "find_denoisers", lambda p: [("transformer", model)])
    assert compile_mod.compile_pipeline(pipe, mode="auto") == ["transformer"]
    assert model.calls == [expect]
