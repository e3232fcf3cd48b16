"""POPE metrics against counts worked out by hand, and the official answer rule."""

import json

import pytest

from xlvlm.errors import XlvlmError
from xlvlm.evaluation import evaluate_predictions, format_report, pope_answer, pope_report


@pytest.mark.parametrize("text, answer", [
    ("yes", "yes"), ("No", "no"), ("no", "no"), ("No, there is no dog.", "no"),
    ("Yes. No other dogs.", "yes"),          # only the first sentence counts
    ("There is not a cat", "no"), ("not", "no"),
    ("NO", "yes"), ("Not really", "yes"),     # case kept, as the official script keeps it
    ("no,\n", "no"),                         # commas removed, any whitespace splits
    ("nothing here", "yes"), ("", "yes"),    # neither word: counted as yes
])
def test_answer_rule(text, answer):
    assert pope_answer(text) == answer


ROWS = [  # prediction, label, split -> read as
    ("Yes, there is a dog.", "yes", "random"),   # yes: TP
    ("No.", "no", "random"),                     # no: TN
    ("There is not a cat", "yes", "random"),     # no: FN
    ("yes", "no", "random"),                     # yes: FP
    ("NO", "no", "popular"),                     # yes: FP
    ("Yes. No dogs.", "yes", "popular"),         # yes: TP
    ("no,\n", "yes", "popular"),                 # no: FN
    ("", "no", "popular"),                       # yes: FP
]


def records():
    return [{"id": i, "prediction": p, "label": y, "split": s} for i, (p, y, s) in enumerate(ROWS)]


def test_metrics_by_hand():
    result = pope_report(records())
    random, popular, overall = result["per_split"]["random"], result["per_split"]["popular"], result["overall"]
    assert (random["tp"], random["fp"], random["tn"], random["fn"]) == (1, 1, 1, 1)
    assert random["accuracy"] == random["precision"] == random["recall"] == random["f1"] == random["yes_ratio"] == 0.5
    assert (popular["tp"], popular["fp"], popular["tn"], popular["fn"]) == (1, 2, 0, 1)
    assert popular["accuracy"] == 0.25 and popular["precision"] == pytest.approx(1 / 3) and popular["recall"] == 0.5
    assert popular["f1"] == pytest.approx(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5)) == pytest.approx(0.4)
    assert popular["yes_ratio"] == 0.75 and popular["label_yes_ratio"] == 0.5
    assert (overall["tp"], overall["fp"], overall["tn"], overall["fn"], overall["n"]) == (2, 3, 1, 2, 8)
    assert overall["accuracy"] == 3 / 8 and overall["precision"] == 0.4 and overall["recall"] == 0.5
    assert overall["f1"] == pytest.approx(4 / 9) and overall["yes_ratio"] == 5 / 8
    assert list(result["per_split"]) == ["random", "popular"] and result["notes"] == []


def test_undefined_rates_and_answer_fallback():
    never_yes = pope_report([{"id": 1, "prediction": "no", "answer": "yes"}, {"id": 2, "prediction": "no", "answer": "no"}])
    overall = never_yes["overall"]
    assert overall["precision"] is None and overall["recall"] == 0 and overall["f1"] == 0 and overall["yes_ratio"] == 0
    only_no = pope_report([{"id": 1, "prediction": "no", "label": "no"}])["overall"]
    assert only_no["precision"] is None and only_no["recall"] is None and only_no["f1"] is None
    mixed = pope_report([{"id": 1, "prediction": "yes", "label": "yes", "split": "random"},
                         {"id": 2, "prediction": "yes", "label": "no"}])
    assert mixed["notes"] == ["1 predictions have no split; they count in 'all' only"]


def test_cli_task_table_and_json(tmp_path, capsys):
    from xlvlm.cli import main

    path = tmp_path / "pred.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records()))
    out = tmp_path / "pope.json"
    assert main(["evaluate", "--task", "pope", "--predictions", str(path), "--out", str(out)]) == 0
    table = capsys.readouterr().out
    header, rule, random, popular, total = table.splitlines()[1:6]
    assert header.split() == ["split", "n", "accuracy", "precision", "recall", "F1", "yes-ratio", "labels", "yes"]
    assert random.split() == ["random", "4", "50.0%", "50.0%", "50.0%", "50.0%", "50.0%", "50.0%"]
    assert popular.split() == ["popular", "4", "25.0%", "33.3%", "50.0%", "40.0%", "75.0%", "50.0%"]
    assert total.split()[:2] == ["all", "8"] and "44.4%" in total
    saved = json.loads(out.read_text())
    assert saved["task"] == "pope" and saved["overall"]["fp"] == 3 and saved["predictions"] == str(path)


def test_errors(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": 1, "prediction": "yes", "answer": "red"}) + "\n")
    with pytest.raises(XlvlmError, match="prediction '1' \\(record 1\\) needs a 'label' .* got 'red'") as info:
        evaluate_predictions(path, task="pope")
    assert str(info.value).startswith(f"{path}: ")  # names the file to fix
    with pytest.raises(XlvlmError, match="apply to --task vqa only"):
        evaluate_predictions(path, task="pope", source="yes", target="no")
    assert "POPE: 1 predictions" in format_report(pope_report([{"id": 1, "prediction": "no", "label": "no"}]))
