import pytest
from PIL import Image

from xlvlm.data import check_images
from xlvlm.errors import XlvlmError


@pytest.fixture
def samples(tmp_path):
    Image.new("RGB", (8, 8), (0, 255, 0)).save(tmp_path / "good.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    good = str(tmp_path / "good.png")
    return [
        {"id": "a", "image": good, "prompt": "p"},
        {"id": "b", "image": str(tmp_path / "missing.jpg"), "prompt": "p"},
        {"id": "c", "image": str(tmp_path / "corrupt.png"), "prompt": "p"},
        {"id": "d", "image": good, "prompt": "p"},
    ]


def test_skip_bad_returns_good_samples_and_the_skips(samples):
    good, skipped = check_images(samples, skip_bad=True)
    assert [s["id"] for s in good] == ["a", "d"]
    assert [(s["id"], s["image"]) for s in skipped] == [("b", samples[1]["image"]), ("c", samples[2]["image"])]
    assert "image not found" in skipped[0]["reason"] and "corrupt or unreadable" in skipped[1]["reason"]


def test_without_skip_the_first_bad_image_raises_one_line(samples):
    with pytest.raises(XlvlmError) as info:
        check_images(samples)
    message = str(info.value)
    assert "\n" not in message and "missing.jpg: image not found" in message
    assert check_images([samples[0]]) == ([samples[0]], [])
