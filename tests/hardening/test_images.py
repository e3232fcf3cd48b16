"""Hostile images: a decompression bomb, a truncated file, a non-image. One line naming the file,
and with --skip-bad the sample is skipped and listed in the manifest."""

import json
import struct
import zlib

import pytest

import xlvlm
from xlvlm.data.images import MAX_IMAGE_PIXELS, load_image
from xlvlm.errors import XlvlmError


def _png_header(path, width, height):
    """A PNG that claims width x height pixels and holds no pixel data (a few dozen bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data
                                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def _bad_images(tmp_path, samples):
    bomb = _png_header(tmp_path / "bomb.png", 20000, 20000)
    just_over = _png_header(tmp_path / "over.png", MAX_IMAGE_PIXELS // 10000 + 1, 10000)  # Pillow only warns here
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(open(samples[0]["image"], "rb").read()[:60])
    text = tmp_path / "text.png"
    text.write_text("not an image")
    return [bomb, just_over, truncated, text]


@pytest.mark.parametrize("which, needle", [(0, "too large"), (1, "too large"), (2, "corrupt"), (3, "corrupt")])
def test_load_image_refuses_with_one_line_naming_the_file(tmp_path, samples, which, needle):
    path = _bad_images(tmp_path, samples)[which]
    with pytest.raises(XlvlmError, match=needle) as info:
        load_image(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    # library calls, steer apply and sweep have no --skip-bad: the advice names the command that has it
    assert "pass --skip-bad" not in str(info.value) and "xlvlm extract --skip-bad" in str(info.value)


def test_extract_refuses_a_bomb_in_one_line_and_skips_every_bad_image_with_skip_bad(cli, tiny_dir, samples, tmp_path):
    bad = _bad_images(tmp_path, samples)
    rows = samples[:2] + [dict(samples[0], id=f"bad{i}", image=str(p)) for i, p in enumerate(bad)]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["extract", "--model", tiny_dir("llava"), "--data", data, "--batch-size", "3", "--quiet"]
    code, _, err = cli(args + ["--out", tmp_path / "strict"])
    assert code == 2 and "bomb.png" in err and "too large" in err and len(err.splitlines()) == 1, err
    code, out, err = cli(args + ["--out", tmp_path / "lenient", "--skip-bad"])
    assert code == 0, err
    store = xlvlm.FeatureStore(tmp_path / "lenient")
    assert len(store) == 2 and "4 skipped" in out
    skipped = {s["id"]: s["reason"] for s in store.manifest.skipped}
    assert sorted(skipped) == ["bad0", "bad1", "bad2", "bad3"]
    assert "too large" in skipped["bad0"] and "too large" in skipped["bad1"] and "corrupt" in skipped["bad2"]
