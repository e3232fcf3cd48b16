"""A run folder from someone else: the report escapes its values and embeds nothing from outside it."""

import base64
import json
import re

import pytest
from PIL import Image

from xlvlm.cli import main

SCRIPT = "<script>alert(1)</script>"
ONERROR = '<img src=x onerror="alert(2)">'
SECRET = "root:x:0:0:SECRET-OUTSIDE-THE-RUN"


def _result(stage, **fields):
    return json.dumps({"stage": stage, "version": 1, **fields})


def _crafted_run(tmp_path):
    """Every stage file with markup in every string field (and in numeric ones), links out, remote notes."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text(SECRET + "\n")
    Image.new("RGB", (4, 4), "red").save(outside / "figure.png")
    (outside / "result.json").write_text(_result("shift", settings={"layer": SECRET}))
    run = tmp_path / "run"
    hostile = SCRIPT + ONERROR
    concepts = run / "concepts"
    concepts.mkdir(parents=True)
    (concepts / "result.json").write_text(_result(
        "concepts", settings={"method": hostile, "n_concepts": hostile, "layer": hostile, "model": hostile,
                              "n_train": hostile, "n_test": hostile},
        metrics={hostile: hostile},
        concepts=[{"concept": hostile, "words": [hostile], "mas_answers": [hostile]}]))
    (concepts / "concept_grid.png").symlink_to(outside / "passwd")  # a "figure" that is /etc/passwd
    (concepts / "patch_heatmaps.png").symlink_to(outside / "figure.png")  # a real PNG, but outside
    (concepts / "command.txt").symlink_to(outside / "passwd")
    shift = run / "shift"
    shift.mkdir()
    (shift / "result.json").write_text(_result(
        "shift", settings={"layer": hostile, "aggregate": hostile}, unembedding=hostile,
        summary={"n_samples": hostile, "share_closer_by_cosine": hostile, "mean_cos_original": hostile,
                 "mean_cos_shifted": hostile},
        concepts=[{"concept": hostile, "matched_finetuned": hostile, "stats": {"n": hostile},
                   "words_shift": [hostile]}]))
    (shift / "shift_grid.png").write_text(SECRET)  # not a PNG: never embedded as one
    sweep = run / "sweep"
    sweep.mkdir()
    (sweep / "result.json").write_text(_result(
        "sweep", source=hostile, target=hostile,
        settings={"positions": hostile, "operator": hostile, "condition": {"layer": hostile}},
        rows=[{"method": hostile, "layer": hostile, "alpha": hostile, "per_type": {hostile: hostile}}]))
    learned = run / "learned"
    learned.mkdir()
    (learned / "result.json").write_text(_result(
        "learned-steering", settings={k: hostile for k in ("hidden", "steer_layer", "context_layer", "model", "context",
                                                          "shifts", "epochs", "lr", "seed")},
        training={k: hostile for k in ("n_train", "n_val", "best_epoch", "seconds", "train_cosine", "val_cosine",
                                       "mean_vector_val_cosine", "val_relative_error", "val_loss")}, history=[hostile]))
    (learned / "learning_curve.png").symlink_to(outside / "figure.png")
    caption = run / "caption"
    caption.mkdir()
    (caption / "result.json").write_text(_result(
        "table", title=hostile, about=hostile, header=[hostile, hostile], rows=[[hostile, [hostile]], [1.5, None]]))
    evaluation = run / "evaluation"
    evaluation.mkdir()
    (evaluation / "result.json").write_text(_result("evaluate", task=hostile, **{hostile: hostile}))
    (run / "linked").mkdir()
    (run / "linked" / "result.json").symlink_to(outside / "result.json")
    (outside / "stage").mkdir()
    (outside / "stage" / "result.json").write_text(_result("shift", settings={"layer": SECRET}))
    (run / "linked_folder").symlink_to(outside / "stage", target_is_directory=True)
    (run / "notes.html").write_text('<p>hi</p><img src="https://evil.example/track.png">')
    (run / "notes.txt").write_text("Notes with " + SCRIPT + "\n\nsecond paragraph")
    return run


def test_report_of_a_crafted_run_escapes_everything_and_embeds_nothing_from_outside(tmp_path):
    run = _crafted_run(tmp_path)
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert "<script" not in page.lower()
    assert not re.search(r"<[a-z][^<>]*onerror", page, re.I)  # escaped text is fine, a live attribute not
    assert "&amp;lt;" not in page  # escaped once, not twice
    assert not re.search(r"<img(?![^>]*src=\"data:image/png;base64,)", page)  # every <img> is a data URI
    assert "evil.example" not in page and not re.search(r'(src|href)="(https?:)?//', page)
    assert "SECRET-OUTSIDE-THE-RUN" not in page
    embedded = b"".join(base64.b64decode(src) for src in re.findall(r'src="data:image/png;base64,([^"]+)"', page))
    assert b"SECRET" not in embedded and embedded == b""  # the outside PNG is not embedded either
    assert "not embedded" in page  # and the reader is told why figures are missing
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # shown as text, not dropped
    assert "<p>second paragraph</p>" in page  # notes.txt: escaped paragraphs
    assert 'Content-Security-Policy' in page


@pytest.mark.parametrize("stage, content", [
    (None, "[1, 2]"), (None, "\x89PNG\x00\xff"), ("concepts", '{"concepts": "abc"}'),
    ("concepts", '{"settings": [1]}'), ("concepts", '{"concepts": [1, 2]}'), ("table", '{"header": "x", "rows": []}'),
    ("table", '{"rows": [1]}'), ("sweep", '{"rows": {"a": 1}}'), ("shift", '{"summary": 3}'),
    ("nonsense", "{}"), ("concepts", '{"version": 99}'), ("concepts", '{"version": "1"}'),
    ("learned-steering", '{"settings": [1]}'), ("learned-steering", '{"training": "abc"}')])
def test_malformed_report_input_is_one_line(tmp_path, capsys, stage, content):
    run = tmp_path / "run"
    (run / "c").mkdir(parents=True)
    if stage:  # a result of the stage with a malformed field
        content = json.dumps({"stage": stage, "version": 1, **json.loads(content)})
    (run / "c" / "result.json").write_bytes(content.encode("latin-1"))
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "result.json" in err and "rerun" in err and len(err.splitlines()) == 1


def test_report_formats_odd_numbers_without_a_traceback(tmp_path):
    run = tmp_path / "run"
    (run / "s").mkdir(parents=True)
    (run / "s" / "result.json").write_text(_result("shift", summary={"share_closer_by_cosine": "most",
                                                                       "mean_cos_original": None}))
    assert main(["report", str(run)]) == 0
    assert "<b>most%</b>" in (run / "report.html").read_text()


def test_concepts_settings_links_and_html_notes_each_are_caught(tmp_path):
    """The three holes one by one, on a run that formats fine: unescaped settings, a linked figure, HTML notes."""
    run = _crafted_run(tmp_path)
    for stage in ("shift", "sweep", "learned", "caption", "evaluation", "linked"):
        for file in (run / stage).iterdir():
            file.unlink()
        (run / stage).rmdir()
    (run / "linked_folder").unlink()
    (run / "notes.txt").unlink()
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert "<script" not in page.lower()
    assert "SECRET" not in page and base64.b64encode(SECRET.encode()).decode()[:20] not in page
    assert "evil.example" not in page
