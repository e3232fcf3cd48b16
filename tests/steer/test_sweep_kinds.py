"""`sweep` over every kind of steering (none, fixed, gated, P2S oracle, L2S) x alphas gives the
numbers and predictions of separate `xlvlm steer apply` runs, on a small slice of the tiny LLaVA."""

import json

import torch

from xlvlm.cli import main
from xlvlm.evaluation import read_predictions
from xlvlm.hooks import record
from xlvlm.steer import Condition, LearnedSteering, PerSampleSteering, SteeringVector
from xlvlm.steer.condition import save_condition
from xlvlm.steer.protocol import gated
from xlvlm.steer.run import AnswerShift, sweep


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_sweep_of_every_kind_equals_separate_apply_runs(tiny_dir, vlm_of, samples, tmp_path):
    vlm = vlm_of("llava")
    items = [dict(s, answer="yes", answer_type="yes/no") for s in samples[:6]]
    gen = torch.Generator().manual_seed(11)
    fixed = SteeringVector({"1": torch.randn(vlm.hidden_size, generator=gen) * 3}, {"method": "mean-diff"})
    p2s = PerSampleSteering({"1": torch.randn(len(items), vlm.hidden_size, generator=gen) * 3},
                            [s["id"] for s in items], {"method": "per-sample"})
    l2s = LearnedSteering("0", "1", torch.randn(3, vlm.hidden_size, generator=gen), torch.randn(3, generator=gen),
                          torch.randn(vlm.hidden_size, 3, generator=gen), torch.randn(vlm.hidden_size, generator=gen))
    direction = torch.randn(vlm.hidden_size, generator=gen)
    with record(vlm, ["0"]) as rec:
        vlm.generate_batch(items, max_new_tokens=1)
    projections = torch.stack([rec.outputs["0"][0][i, -1] for i in range(len(items))]) @ direction
    middle = projections.sort().values[2:4].mean()
    condition = Condition("0", direction, float(middle))
    kinds = {"fixed": fixed, "gated": gated(fixed, condition), "p2s": p2s, "l2s": l2s}
    scorer = AnswerShift("yes", "no")
    rows = sweep(vlm, kinds, items, alphas=[0, 3], scorer=scorer, max_new_tokens=3, batch_size=4, progress=False,
                 out=tmp_path / "sweep")
    assert [(r["method"], r["alpha"]) for r in rows] == [(k, a) for k in kinds for a in (0.0, 3.0)]

    model, data = str(tiny_dir("llava")), _jsonl(tmp_path / "data.jsonl", items)
    fixed.save(tmp_path / "fixed.safetensors")
    p2s.save(tmp_path / "p2s.safetensors")
    l2s.save(tmp_path / "l2s.safetensors")
    save_condition(condition, tmp_path / "condition.safetensors")
    given = {"fixed": ["--vector", str(tmp_path / "fixed.safetensors")],
             "gated": ["--vector", str(tmp_path / "fixed.safetensors"), "--condition",
                       str(tmp_path / "condition.safetensors")],
             "p2s": ["--per-sample", str(tmp_path / "p2s.safetensors")],
             "l2s": ["--learned", str(tmp_path / "l2s.safetensors")]}
    baseline = read_predictions(tmp_path / "sweep" / "baseline.jsonl")
    for row in rows:
        out = tmp_path / f"{row['method']}-{row['alpha']:g}.jsonl"
        assert main(["steer", "apply", "--model", model, "--data", data, *given[row["method"]], "--alpha",
                     str(row["alpha"]), "--max-new-tokens", "3", "--batch-size", "2", "--quiet",
                     "--out", str(out)]) == 0
        applied = read_predictions(out)
        swept = read_predictions(tmp_path / "sweep" / f"pred_{row['method']}_L{row['layer']}_a{row['alpha']:g}.jsonl")
        assert [p["prediction"] for p in applied] == [p["prediction"] for p in swept], row["method"]
        scores = scorer(applied, baseline)
        assert {k: row[k] for k in scores} == scores
    # "none": alpha 0 of every kind is the baseline itself
    for name in kinds:
        zero = read_predictions(tmp_path / "sweep" / f"pred_{name}_L1_a0.jsonl")
        assert [p["prediction"] for p in zero] == [p["prediction"] for p in baseline]
    steered = [r for r in rows if r["alpha"] == 3.0]
    assert any(r["side_unchanged"] != 1.0 or r["success"] for r in steered)  # alpha 3 moves something


def test_pope_score_of_a_sweep_row_by_hand():
    from xlvlm.steer.run import PopeScore

    baseline = [{"id": "a", "prediction": "yes", "label": "yes"}, {"id": "b", "prediction": "yes", "label": "no"},
                {"id": "c", "prediction": "yes", "label": "no"}, {"id": "d", "prediction": "no", "label": "yes"}]
    steered = [dict(r, prediction=p) for r, p in zip(baseline, ["yes", "no", "yes", "no"])]
    row = PopeScore()(steered, baseline)
    # tp 1 (a), fp 1 (c), tn 1 (b), fn 1 (d): F1 = 2 / (2 + 1 + 1), yes-ratio 2/4; one answer moved (b)
    assert row["f1"] == 0.5 and row["yes_ratio"] == 0.5 and row["accuracy"] == 0.5 and row["changed"] == 0.25
