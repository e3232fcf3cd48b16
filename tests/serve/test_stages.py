"""The explorer's stage tabs over HTTP (no browser, no model): learned steering, hallucination
steering, calibration and evaluation, each with its numbers and its checked figures; a malformed
result or a figure that is not a PNG is a one-line message, never a traceback."""

import hashlib
import json
import shutil

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402
from xlvlm.serve.app import create_app  # noqa: E402

from tests.planted_run import concepts_and_shift_run  # noqa: E402
from tests.serve.stage_run import CAL_ALPHA, add_stages  # noqa: E402

HIDDEN = 6


@pytest.fixture(scope="module")
def run(tmp_path_factory, samples):
    return add_stages(concepts_and_shift_run(tmp_path_factory.mktemp("stages"), samples), HIDDEN)


def _client(run):
    return TestClient(create_app(run), base_url="http://127.0.0.1:8000")


def _get(client, tab):
    response = client.get(f"/api/stages/{tab}")
    assert response.status_code == 200, response.text
    return response.json()


def test_each_tab_shows_its_stages_numbers_and_figures(run):
    client = _client(run)
    expected = {"learned": ({"learned-steering"}, {"learned/learning_curve.png", "learned/calibration.png"}),
                "hallucination": ({"hallucination-steering"}, {"hallucination/hallucination_steering.png"}),
                "calibration": ({"calibration", "calibrated-l2s"},
                                {"calibration/calibration.png", "calibrated-l2s/calibrated_l2s.png"}),
                "evaluation": ({"table", "evaluate"}, set())}
    for tab, (stages, figures) in expected.items():
        sections = _get(client, tab)
        assert {s["stage"] for s in sections} == stages and not any("error" in s for s in sections)
        assert {f["path"] for s in sections for f in s["figures"]} == figures
        for path in figures:
            response = client.get("/files/" + path)
            assert response.status_code == 200 and response.content.startswith(b"\x89PNG")
        assert all(any(t["rows"] for t in s["tables"]) for s in sections)
    calibration = next(s for s in _get(client, "calibration") if s["stage"] == "calibration")
    choice = {r["setting"]: r["value"] for r in calibration["tables"][0]["rows"]}
    assert choice["alpha"] == CAL_ALPHA and choice["candidate"] == "v"
    hallucination = _get(client, "hallucination")[0]
    assert [r["method"] for r in hallucination["tables"][0]["rows"]] == ["none", "L2S", "original organism"]
    table = next(s for s in _get(client, "evaluation") if s["stage"] == "table")
    assert table["title"] == "Caption steering" and table["tables"][0]["rows"] == [
        {"captions by": "original, alpha 1", "name a colour": 0.4}]


def test_malformed_results_and_a_fake_figure_are_one_line_messages(run, tmp_path):
    hostile = tmp_path / "run"
    shutil.copytree(run, hostile)
    (hostile / "calibration" / "result.json").write_text('{"stage": "calibration", "rows": "not a list"')
    (hostile / "calibrated-l2s" / "result.json").write_text('{"stage": "calibrated-l2s", "version": 1, "rows": 3}')
    fake = b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10
    (hostile / "learned" / "learning_curve.png").write_bytes(fake)  # listed with its own hash: only the figure check sees it
    learned = json.loads((hostile / "learned" / "result.json").read_text())
    learned["outputs"]["learning_curve.png"] = hashlib.sha256(fake).hexdigest()
    (hostile / "learned" / "result.json").write_text(json.dumps(learned))
    (hostile / "hallucination" / "hallucination_steering.png").write_bytes(fake)  # not the file its result lists
    client = _client(hostile)
    assert client.get("/api/run").status_code == 200  # one bad file hides no other stage
    sections = _get(client, "calibration")
    errors = [s["error"] for s in sections if "error" in s]  # with the unreadable ones of every stage
    assert len(errors) == 3 and all("\n" not in e and "Traceback" not in e for e in errors), errors
    assert any("calibration/result.json" in e and "unreadable" in e for e in errors)
    assert any("calibrated-l2s/result.json" in e and "'rows'" in e for e in errors)
    assert str(hostile) not in " ".join(errors)  # named within the run, not by the server's own path
    assert any(e.startswith("hallucination/hallucination_steering.png: not the file") for e in errors)
    learned = _get(client, "learned")
    shown = {f["path"] for s in learned if "figures" in s for f in s["figures"]}
    assert shown == {"learned/calibration.png"}  # the fake figure is left out of the tab
    response = client.get("/files/learned/learning_curve.png")
    assert response.status_code == 403 and "\n" not in response.text.strip().splitlines()[0]
    assert client.get("/api/stages/nope").json()["error"].startswith("'nope': no such tab")
