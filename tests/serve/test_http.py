"""`xlvlm serve` over plain HTTP (no browser, no model): what it serves and what it refuses."""

import io
import json
from pathlib import Path
import struct
import zlib

import pytest
from PIL import Image

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402
from xlvlm.cli import main  # noqa: E402
from xlvlm.serve.app import CSP, create_app  # noqa: E402
from xlvlm.serve.runfolder import RefusedPath, RunFolder  # noqa: E402
from xlvlm.serve.uploads import MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS  # noqa: E402

from tests.planted_run import concepts_and_shift_run  # noqa: E402
from tests.hardening.test_report_hostile import ONERROR, SCRIPT, SECRET, _crafted_run  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory, samples):
    """A run folder with a concept dictionary (sample images outside it, as a real run's are), a
    shift analysis, a sweep with a predictions file, and a secret file next to it."""
    root = tmp_path_factory.mktemp("serve")
    run = concepts_and_shift_run(root, samples)
    sweep = run / "sweep"
    sweep.mkdir()
    (sweep / "result.json").write_text(json.dumps({"stage": "sweep", "version": 1, "source": "yes", "target": "no",
                                                   "rows": [{"method": "mean-diff", "layer": "1", "alpha": 2.0,
                                                             "success": 0.5, "per_type": {"yes/no": 0.75}}]}))
    (sweep / "pred_a2.jsonl").write_text(json.dumps({"id": SCRIPT, "prompt": "is it red?", "answer": "yes",
                                                     "prediction": "no"}) + "\nnot json\n")
    (root / "secret.txt").write_text(SECRET)
    return run


@pytest.fixture(scope="module")
def client(run, samples):
    """The server, allowed to show images from the samples' folder (outside the run)."""
    image_root = Path(samples[0]["image"]).parent
    return TestClient(create_app(run, image_roots=[image_root]), base_url="http://127.0.0.1:8000")


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "red").save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_page_and_the_run_data_are_served_with_a_strict_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and '<script src="/static/app.js"' in page.text
    assert page.headers["content-security-policy"] == CSP and "script-src 'self'" in CSP
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "http" not in page.text.replace("http-equiv", "")  # nothing loaded from anywhere else
    assert {s["stage"] for s in client.get("/api/run").json()["stages"]} == {"concepts", "shift", "sweep"}
    concepts = client.get("/api/concepts").json()
    assert len(concepts) == 1 and len(concepts[0]["concepts"]) == 3
    figure = client.get("/files/" + concepts[0]["figures"][0]["path"])
    assert figure.status_code == 200 and figure.headers["content-type"] == "image/png"
    sweeps = client.get("/api/sweeps").json()
    assert sweeps[0]["rows"][0]["acc yes/no"] == 0.75
    assert client.get("/api/predictions/files").json() == ["sweep/pred_a2.jsonl"]  # not the stores' shards
    predictions = client.get("/api/predictions", params={"file": "sweep/pred_a2.jsonl"}).json()
    assert predictions["rows"] == [{"id": SCRIPT, "prompt": "is it red?", "answer": "yes", "prediction": "no"}]
    assert predictions["skipped"] == 1
    assert "<h2>Concepts: concepts</h2>" in client.get("/report").text


def test_sample_thumbnails_and_histograms_come_from_the_run_records(client):
    concept = client.get("/api/concepts").json()[0]["concepts"][0]
    assert concept["samples"] and all(s["has_image"] for s in concept["samples"])
    image = client.get("/api/concepts/image", params={"folder": "concepts", "concept": 0, "rank": 0})
    assert image.status_code == 200 and Image.open(io.BytesIO(image.content)).size[0] > 0
    histogram = client.get("/api/concepts/histogram", params={"folder": "concepts", "concept": 0}).json()
    assert sum(histogram["counts"]) == 10  # one count per training sample (12 minus 2 held out)
    for params in ({"concept": 0, "rank": 99}, {"concept": -1, "rank": 0}, {"concept": 9, "rank": 0}):
        assert client.get("/api/concepts/image", params={"folder": "concepts", **params}).status_code == 403
    assert client.get("/api/concepts/image", params={"folder": "../x", "concept": 0, "rank": 0}).status_code == 403


def test_sample_images_outside_the_run_and_its_image_roots_are_not_shown(run):
    client = TestClient(create_app(run), base_url="http://127.0.0.1")  # no image root given
    concept = client.get("/api/concepts").json()[0]["concepts"][0]
    assert concept["samples"] and not any(s["has_image"] for s in concept["samples"])
    response = client.get("/api/concepts/image", params={"folder": "concepts", "concept": 0, "rank": 0})
    assert response.status_code == 400 and "outside the run folder" in response.json()["error"]


@pytest.mark.parametrize("path", ["/files/%2e%2e/secret.txt", "/files/..%2fsecret.txt", "/files/concepts/..%2f..%2fsecret.txt",
                                  "/files//etc/passwd", "/files/%2fetc%2fpasswd", "/files/concepts%5c..%5c..%5csecret.txt",
                                  "/files/concepts/dictionary/concepts.safetensors"])
def test_traversal_and_other_files_are_refused(client, path):
    response = client.get(path)
    assert response.status_code in (403, 404), response.text
    assert SECRET not in response.text and "root:" not in response.text
    assert response.headers["content-type"].startswith("text/html")  # the error page


def test_the_file_rule_itself(run, tmp_path):
    folder = RunFolder(run)
    for bad in ("../secret.txt", "/etc/passwd", "concepts/../../secret.txt", "a\\..\\b.txt", "x\x00.png", ""):
        with pytest.raises(RefusedPath):
            folder.file(bad)
    assert folder.file("concepts/concept_grid.png").is_file()


def test_links_out_of_the_run_are_refused(tmp_path):
    run = _crafted_run(tmp_path)  # figures and a folder linking outside, markup in every field
    client = TestClient(create_app(run), base_url="http://127.0.0.1")
    for path in ("concepts/concept_grid.png", "concepts/patch_heatmaps.png", "concepts/command.txt",
                 "linked_folder/result.json", "linked/result.json", "shift/shift_grid.png",
                 "learned/learning_curve.png"):
        response = client.get(f"/files/{path}")
        assert response.status_code == 403 and SECRET not in response.text, path
    assert [s["folder"] for s in client.get("/api/run").json()["stages"]] == [
        "caption", "concepts", "evaluation", "learned", "shift", "sweep"]  # the linked results are left out
    assert client.get("/api/concepts").json()[0]["figures"] == []


def test_the_error_page_escapes_what_the_request_said(client):
    response = client.get("/files/" + SCRIPT + ONERROR + ".png")
    assert response.status_code == 403
    assert "<script>alert" not in response.text and "<img src=x" not in response.text
    assert "&lt;script&gt;" in response.text
    bad = client.get("/api/concepts/histogram", params={"folder": "concepts", "concept": "one"})
    assert bad.status_code == 400 and "concept" in bad.json()["error"]


def test_requests_naming_another_host_are_refused(client):
    """DNS rebinding: a page of evil.example resolved to 127.0.0.1 sends Host: evil.example."""
    assert client.get("/api/run", headers={"host": "evil.example"}).status_code == 400
    assert client.get("/api/run", headers={"host": "localhost:8000"}).status_code == 200


def test_posts_from_another_sites_page_are_refused(client):
    upload = _png(4, 4)
    assert client.post("/api/upload", content=upload, headers={"origin": "https://evil.example"}).status_code == 403
    assert client.post("/api/upload", content=upload, headers={"origin": "http://127.0.0.1:8000"}).status_code == 200
    assert client.post("/api/upload", content=upload).status_code == 200  # no Origin: not a browser's cross-site post


def test_bound_elsewhere_on_purpose_any_host_name_is_answered(run):
    client = TestClient(create_app(run, host="0.0.0.0"), base_url="http://workstation.lan:8000")
    assert client.get("/api/run").status_code == 200


def test_an_upload_round_trips_as_an_image(client):
    response = client.post("/api/upload", content=_png(30, 20), headers={"content-type": "image/png"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["width"], body["height"]) == (30, 20)
    back = client.get(f"/api/upload/{body['token']}.png")
    assert back.status_code == 200 and Image.open(io.BytesIO(back.content)).getpixel((5, 5)) == (255, 0, 0)
    assert client.get("/api/upload/unknown.png").status_code == 400


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels in a few bytes (a decompression bomb's header)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


@pytest.mark.parametrize("body, status, words", [
    (b"", 400, "empty file"),
    (b"GIF89a not really", 400, "corrupt or unreadable"),
    (b"%PDF-1.4", 400, "corrupt or unreadable"),
    (None, 400, f"the limit is {MAX_UPLOAD_PIXELS:,}"),
    (b"x" * (MAX_UPLOAD_BYTES + 1), 413, "limit"),
])
def test_bad_uploads_are_refused_with_a_reason(client, body, status, words):
    body = _png_header_only(4097, 4096) if body is None else body  # one column over the pixel limit
    response = client.post("/api/upload", content=body)
    assert response.status_code == status and words in response.json()["error"]


def test_play_without_a_model_says_how_to_start_one(client):
    response = client.post("/api/play/answer", json={"image": {"store": "features/qa", "id": "q0"}, "prompt": "is it red?"})
    assert response.status_code == 503 and "--model" in response.json()["error"]
    assert client.get("/api/run").json()["play"] is False


def test_the_command_line_refuses_bad_input_before_serving(tmp_path, capsys, monkeypatch):
    import xlvlm.serve.app

    monkeypatch.setattr(xlvlm.serve.app, "serve", lambda *a, **k: pytest.fail("served despite bad input"))
    assert main(["serve", str(tmp_path / "nope")]) == 2
    assert "run folder not found" in capsys.readouterr().err
    assert main(["serve", str(tmp_path), "--port", "70000"]) == 2
    assert main(["serve", str(tmp_path), "--image-root", str(tmp_path / "nope")]) == 2
    assert "--image-root" in capsys.readouterr().err


@pytest.mark.parametrize("body, field", [
    ({"image": {"store": "s", "id": "1"}, "prompt": "q", "vector": "v", "alpha": 1e7}, "alpha"),
    ({"image": {"store": "s", "id": "1"}, "prompt": "", "vector": "v", "alpha": 1}, "prompt"),
    ({"image": {"store": "s", "id": "1"}, "prompt": "q" * 501, "vector": "v", "alpha": 1}, "prompt"),
    ({"image": {"store": "s", "id": "1"}, "prompt": "q", "alpha": 1}, "vector"),
    ({"prompt": "q", "vector": "v", "alpha": "strong"}, "image"),
])
def test_play_requests_are_checked_before_any_model_call(client, body, field):
    response = client.post("/api/play/steer", json=body)
    assert response.status_code == 400 and field in response.json()["error"], response.text


def test_the_demo_prints_a_serve_command_that_parses_and_shows_its_images(tmp_path):
    from xlvlm.apps.demo import serve_command
    from xlvlm.apps.organism.data import vqa_samples
    from xlvlm.cli import build_parser

    command = serve_command(tmp_path / "my run")
    args = build_parser().parse_args(__import__("shlex").split(command)[1:])
    assert (args.command, args.run_dir, args.model) == ("serve", str(tmp_path / "my run"), "organism:original")
    folder = RunFolder(tmp_path, image_roots=args.image_root)
    for split in ("train", "test"):  # the demo's stores hold samples of both splits
        assert folder.image_path(vqa_samples(split)[0]["image"]).is_file()
