"""File inputs: read, identified by sha256 and size, reused from a profile only while unchanged."""

from __future__ import annotations

import hashlib

import pytest
from PIL import Image

from magcache_cli.errors import InputError
from magcache_cli.runner.inputs import (
    drop_unaccepted,
    read_input,
    read_inputs,
    recorded_inputs,
    sha256_file,
)
from magcache_cli.testing.tiny.conditioned import sample_image


def test_an_image_is_identified_by_its_bytes_and_size(tmp_path):
    path = sample_image(tmp_path / "a.png", (40, 24))
    value, info = read_input("image", path)
    assert value.size == (40, 24) and value.mode == "RGB"
    assert (info.kind, info.width, info.height, info.frames) == ("image", 40, 24, None)
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_videos_from_a_gif_and_from_a_frame_folder(tmp_path):
    frames = [Image.new("RGB", (16, 8), (i * 40, 0, 0)) for i in range(3)]
    frames[0].save(tmp_path / "clip.gif", save_all=True, append_images=frames[1:])
    value, info = read_input("video", tmp_path / "clip.gif")
    assert len(value) == 3 and (info.kind, info.width, info.height, info.frames) == ("video", 16, 8, 3)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        f.save(folder / f"{i:03d}.png")
    value, info = read_input("video", folder)
    assert [v.getpixel((0, 0))[0] for v in value] == [0, 40, 80] and info.frames == 3
    h = hashlib.sha256()
    for i in range(3):
        h.update(f"{i:03d}.png".encode() + b"\0" + (folder / f"{i:03d}.png").read_bytes())
    assert info.sha256 == h.hexdigest() == sha256_file(folder)


def test_unreadable_files_are_one_line_errors_naming_the_argument(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(InputError, match=r"^mask_image: cannot read .*notes.png as an image") as e:
        read_input("mask_image", tmp_path / "notes.png")
    assert e.value.arg == "mask_image" and "\n" not in str(e.value)
    with pytest.raises(InputError, match="image: .*missing.png does not exist"):
        read_input("image", tmp_path / "missing.png")


def test_several_files_for_one_argument_make_a_list(tmp_path):
    a, b = sample_image(tmp_path / "a.png", seed=1), sample_image(tmp_path / "b.png", seed=2)
    values, infos = read_inputs([("image", str(a), None), ("image", str(b), None), ("mask_image", str(a), None)])
    assert isinstance(values["image"], list) and len(values["image"]) == 2
    assert [i.path for i in infos] == [str(a), str(b), str(a)]


def test_recorded_inputs_are_reused_only_while_unchanged(tmp_path, monkeypatch):
    path = sample_image(tmp_path / "start.png")
    _, info = read_input("image", path)
    values, infos, notes = recorded_inputs([info], given=set(), accepted={"image", "prompt"})
    assert values["image"].size == (32, 32) and infos == [info] and notes == []
    # given on the command line: the recorded one is not read
    assert recorded_inputs([info], given={"image"}, accepted=None) == ({}, [], [])
    # a pipeline that does not take it: dropped with a note
    assert recorded_inputs([info], given=set(), accepted={"prompt"})[2] == [
        "calibration.inputs: image dropped (this pipeline does not take it)"]
    # a path relative to the profile's folder is found there
    monkeypatch.chdir(tmp_path.parent)
    rel = info.__class__(**{**vars(info), "path": "start.png"})
    assert recorded_inputs([rel], set(), None, profile_dir=tmp_path)[0]["image"].size == (32, 32)
    sample_image(path, seed=9)  # changed since calibration
    with pytest.raises(InputError, match="image: the profile's image .*start.png changed since calibration"):
        recorded_inputs([info], set(), None)
    path.unlink()
    with pytest.raises(InputError, match="is not there"):
        recorded_inputs([info], set(), None)


def test_inherited_arguments_a_pipeline_does_not_take_are_dropped_with_a_note():
    kept, notes = drop_unaccepted({"num_frames": 9, "strength": 0.5}, {"strength", "video"}, "calibration")
    assert kept == {"strength": 0.5}
    assert notes == ["calibration: num_frames dropped (this pipeline does not take it)"]
