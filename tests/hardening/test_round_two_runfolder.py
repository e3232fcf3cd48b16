"""Hostile run folders and uploads, round two: images that declare absurd sizes, uploads that
would grow the server's memory, JSON values that overflow or nest too deep (findings 1-3)."""

import json
import struct
import zlib

import pytest
from PIL import Image

from xlvlm.cli import main
from xlvlm.errors import XlvlmError


def bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A PNG of a few dozen bytes whose header declares ``width`` x ``height`` pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 7))
            + chunk(b"IEND", b""))


def _result(folder, **fields):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "result.json").write_text(json.dumps({"stage": "concepts", "version": 1, **fields}))


def _bomb_run(tmp_path):
    run = tmp_path / "run"
    _result(run / "concepts", concepts=[{"concept": 0, "words": ["red"]}])
    (run / "concepts" / "concept_grid.png").write_bytes(bomb_png())
    Image.new("RGB", (8, 8), "red").save(run / "concepts" / "patch_heatmaps.png")
    return run


# ---- finding 1: images of a run are checked like uploads --------------------------------------
def test_finding_1_report_does_not_inline_a_png_that_declares_20000_pixels_a_side(tmp_path, capsys):
    run = _bomb_run(tmp_path)
    assert len(bomb_png()) < 100
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 1  # the real 8 x 8 figure only
    assert "concept_grid.png not embedded" in page and "image too large" in page


def test_finding_1_serve_neither_lists_nor_serves_it(tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from xlvlm.serve.app import create_app

    run = _bomb_run(tmp_path)
    client = TestClient(create_app(run), base_url="http://127.0.0.1:8000")
    served = client.get("/files/concepts/concept_grid.png")
    assert served.status_code == 403 and "image too large" in served.text
    assert client.get("/files/concepts/patch_heatmaps.png").status_code == 200
    figures = [f["path"] for f in client.get("/api/concepts").json()[0]["figures"]]
    assert figures == ["concepts/patch_heatmaps.png"]
    report = client.get("/report")
    assert report.status_code == 200 and report.text.count("data:image/png;base64,") == 1


def test_finding_1_checked_figure_refuses_declared_size_format_and_truncation(tmp_path):
    from xlvlm.data.images import checked_figure

    cases = {"bomb.png": bomb_png(), "gif.png": b"GIF89a" + b"\x00" * 20}
    good = tmp_path / "good.png"
    Image.effect_noise((64, 64), 40).convert("RGB").save(good)
    cases["truncated.png"] = good.read_bytes()[: len(good.read_bytes()) // 2]
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(XlvlmError, match=name):
            checked_figure(tmp_path / name)
    assert checked_figure(good) == good.read_bytes()


# ---- finding 2: the upload cache is bounded by bytes -------------------------------------------
def test_finding_2_uploads_are_bounded_by_decoded_bytes_not_by_count():
    from xlvlm.serve.uploads import MAX_UPLOAD_CACHE_BYTES, Uploads

    assert MAX_UPLOAD_CACHE_BYTES < 32 * 4096 * 4096 * 3  # 32 of the largest uploads no longer fit
    uploads = Uploads(max_bytes=3 * 64 * 64 * 3)
    tokens = [uploads.add(Image.new("RGB", (64, 64))) for _ in range(10)]
    assert uploads.bytes == 3 * 64 * 64 * 3
    for token in tokens[-3:]:
        assert uploads.get(token).size == (64, 64)
    with pytest.raises(XlvlmError, match="upload it again"):
        uploads.get(tokens[0])
    with pytest.raises(XlvlmError, match="smaller image"):
        uploads.add(Image.new("RGB", (128, 128)))


# ---- finding 3: run-folder JSON is read with limits --------------------------------------------
HOSTILE_JSON = {
    "long_int": '{"stage": "concepts", "version": 1, "metrics": {"n": ' + "9" * 4001 + "}}",
    "deep": '{"stage": "concepts", "version": 1, "metrics": ' + "[" * 100000 + "]" * 100000 + "}",
    "huge_float": '{"stage": "concepts", "version": 1, "metrics": {"x": 1e999}}',
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_JSON))
def test_finding_3_report_refuses_hostile_json_in_one_line(tmp_path, capsys, kind):
    run = tmp_path / "run"
    (run / "concepts").mkdir(parents=True)
    (run / "concepts" / "result.json").write_text(HOSTILE_JSON[kind])
    code = main(["report", str(run)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err[:500]
    assert "result.json" in err and "Traceback" not in err


@pytest.mark.parametrize("kind", sorted(HOSTILE_JSON))
def test_finding_3_serve_answers_400_with_the_file_named(tmp_path, kind):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from xlvlm.serve.app import create_app

    run = tmp_path / "run"
    (run / "concepts").mkdir(parents=True)
    (run / "concepts" / "result.json").write_text(HOSTILE_JSON[kind])
    client = TestClient(create_app(run), base_url="http://127.0.0.1:8000", raise_server_exceptions=False)
    answer = client.get("/api/concepts")
    assert answer.status_code == 400 and "result.json" in answer.json()["error"]


def test_finding_3_read_untrusted_json_limits(tmp_path):
    from xlvlm.io import MAX_JSON_DEPTH, read_untrusted_json

    path = tmp_path / "x.json"
    path.write_text("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH)
    read_untrusted_json(path)  # at the limit: read
    path.write_text('{"a": "[[[[[[", "b": NaN, "n": ' + "9" * 100 + "}")
    assert read_untrusted_json(path)["n"] == int("9" * 100)
    path.write_text("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))
    with pytest.raises(XlvlmError, match="x.json.*nested"):
        read_untrusted_json(path)
    path.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(XlvlmError, match="not UTF-8"):
        read_untrusted_json(path)


def test_finding_3_predictions_line_nested_too_deep_is_skipped(tmp_path):
    pytest.importorskip("fastapi")
    from xlvlm.serve.runfolder import RunFolder

    run = tmp_path / "run"
    run.mkdir()
    (run / "p.jsonl").write_text("[" * 100000 + "]" * 100000 + "\n" + json.dumps({"id": "a", "prediction": "no"}) + "\n")
    answer = RunFolder(run).predictions("p.jsonl")
    assert answer["skipped"] == 1 and answer["rows"][0]["id"] == "a"
