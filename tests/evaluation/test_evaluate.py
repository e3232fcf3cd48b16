import json

import pytest

from xlvlm.errors import XlvlmError
from xlvlm.evaluation import evaluate_predictions, format_report

from tests.evaluation.handmade import BASELINE, REFERENCES, STEERED, records  # noqa: F401


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_vqa_evaluation_with_targeted_report_and_table(tmp_path):
    steered = write(tmp_path / "steered.jsonl", [dict(r, image="/x.png", prompt="q") for r in records(STEERED)])
    baseline = write(tmp_path / "base.jsonl", records(BASELINE))
    result = evaluate_predictions(steered, task="vqa", baseline=baseline, source="yes", target="no")
    assert result["n"] == 9 and result["predictions"] == str(steered) and result["baseline"] == str(baseline)
    assert result["targeted"]["success"] == 0.75
    table = format_report(result)
    assert "answer type" in table and "yes/no" in table and "success 75.0% (baseline 0.0%)" in table
    assert "shape" in table and "-50.0" in table and "+0.0" in table
    plain = format_report(evaluate_predictions(baseline))
    assert "Targeted" not in plain and plain.splitlines()[0] == "VQA accuracy: 9 predictions, 9 with references"


def test_caption_evaluation_table(tmp_path):
    rows = [{"id": "a", "prediction": "A red car on a street.", "captions": ["A red car on the street.", "A car."]},
            {"id": "b", "prediction": "A happy dog.", "captions": ["A dog on a beach."]}]
    path = write(tmp_path / "captions.jsonl", rows)
    result = evaluate_predictions(path, task="caption", meteor=False, baseline=path)
    assert result["metrics"]["n_scored"] == 2 and result["metrics"]["BLEU-4"] > 0
    assert result["class_words"]["colors"]["counts"] == {"red": 1}
    assert result["reference_class_words"]["places"]["counts"] == {"beach": 1, "street": 1}
    table = format_report(result)
    assert "CIDEr-D" in table and "colors" in table and "red 1" in table and "note: METEOR not requested" in table


def test_evaluation_errors(tmp_path):
    good = write(tmp_path / "p.jsonl", [{"id": 1, "prediction": "yes", "answer": "yes"}])
    cases = [
        (dict(path=good, task="retrieval"), "unknown task 'retrieval'"),
        (dict(path=good, source="yes"), "needs both source and target"),
        (dict(path=good, task="caption", target="no"), "apply to --task vqa only"),
        (dict(path=tmp_path / "none.jsonl"), "none.jsonl: predictions file not found"),
        (dict(path=write(tmp_path / "bad.jsonl", [{"id": 1}])), "bad.jsonl:1: missing field 'prediction'"),
    ]
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": 1, "prediction": "x"}\n{"id": 2,\n')
    cases.append((dict(path=broken), "broken.jsonl:2: malformed JSON"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    cases.append((dict(path=empty), "no predictions in file"))
    for options, fragment in cases:
        with pytest.raises(XlvlmError) as info:
            evaluate_predictions(**options)
        assert fragment in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(XlvlmError, match="unknown result task"):
        format_report({"task": "nope"})


def test_a_registered_task_is_scored_printed_and_named_in_errors(tmp_path, monkeypatch):
    from xlvlm.evaluation import tasks

    monkeypatch.setattr(tasks, "TASKS", dict(tasks.TASKS))
    monkeypatch.setattr("xlvlm.evaluation.TASKS", tasks.TASKS)
    tasks.register_task(tasks.Task("length", lambda predictions, options: {"task": "length", "n": len(predictions)},
                                   lambda result: [f"{result['n']} predictions"]))
    path = write(tmp_path / "p.jsonl", [{"id": 1, "prediction": "yes"}, {"id": 2, "prediction": "no"}])
    result = evaluate_predictions(path, task="length")
    assert result == {"task": "length", "n": 2, "predictions": str(path)}
    assert format_report(result) == "2 predictions\n"
    with pytest.raises(XlvlmError, match=r"use --task vqa, caption, pope, safety or length$"):
        evaluate_predictions(path, task="nope")
    with pytest.raises(XlvlmError, match="apply to --task vqa only"):
        evaluate_predictions(path, task="length", source="yes", target="no")
