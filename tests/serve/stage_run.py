"""The stages of the explorer's other tabs, written into a run folder by their real writers from
small hand-made results (no training, no model call): learned steering (calibrated, its file
playable), calibration (a calibrated fixed vector), the organism's calibrated L2S and
hallucination-steering comparison, a table and an evaluation. Used by the HTTP and browser tests."""

from pathlib import Path

import torch

from xlvlm.io import atomic_write_json, stage_result

CAL_ALPHA = 3.0


def _calibration(candidates=("v",)):
    from xlvlm.steer.calibrate import Calibration

    rows = [{"candidate": "none", "alpha": 0.0, "score": 0.6, "side_effect": 0.0, "allowed": True, "yes_ratio": 0.8}]
    rows += [{"candidate": c, "alpha": a, "score": 0.6 + a / 10, "side_effect": a / 200, "allowed": a <= 4,
              "yes_ratio": 0.8 - a / 10} for c in candidates for a in (1.0, 3.0, 6.0)]
    return Calibration(candidates[0], CAL_ALPHA, 0.9, 0.015, rows,
                       {"objective": "pope-f1", "max_side_effect": 0.02, "alphas": [1.0, 3.0, 6.0]},
                       on={"data": "validation.jsonl", "n_samples": 12, "n_control": 8})


def learned(hidden_size: int, context_layer: str = "1", steer_layer: str = "2", hidden: int = 4):
    """A small random LearnedSteering of the model's hidden size."""
    from xlvlm.steer.learned import LearnedSteering

    g = torch.Generator().manual_seed(0)
    return LearnedSteering(context_layer, steer_layer, torch.randn(hidden, hidden_size, generator=g) * 0.01,
                           torch.zeros(hidden), torch.randn(hidden_size, hidden, generator=g) * 0.01,
                           torch.zeros(hidden_size), metadata={"model": "organism:original"},
                           history=[{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "val_cosine": 0.5 + e / 10}
                                    for e in (1, 2, 3)])


def add_stages(run: Path, hidden_size: int) -> Path:
    """Write every stage of the new tabs under ``run``; returns ``run``."""
    from xlvlm.apps.organism import calibrated_l2s, hallucination_steering as hs
    from xlvlm.steer import SteeringVector
    from xlvlm.steer.calibrate_outputs import stamped, write_calibration
    from xlvlm.steer.learn_outputs import write_learned

    calibration = _calibration()
    model = stamped(learned(hidden_size), calibration)
    write_learned(model, run / "learned", command="xlvlm steer learn ...", calibration=calibration)
    vector = SteeringVector({"2": torch.ones(hidden_size) * 0.01}, {"method": "mean-diff"})
    write_calibration(calibration, vector, run / "calibration", command="xlvlm steer calibrate ...")
    curve = [{"alpha": a, "score": 0.7 + a / 20, "yes_ratio": 0.8 - a / 20, "side_effect": a / 400} for a in (0, 1, 2, 4)]
    calibrated_l2s.write_result({"settings": {"alphas": [1, 2, 4], "max_side_effect": 0.02}, "n_train": 20,
                                 "n_calibration": 10, "n_test": 30, "none": {"f1": 0.66, "yes_ratio": 0.9},
                                 "rows": [{"contrast": "framings", "vector_norm_mean": 5.0, "alpha": 2.0,
                                           "calibration": {"rows": curve}, "test": {"f1": 0.97, "yes_ratio": 0.51},
                                           "test_side_effect": 0.0}]}, run / "calibrated-l2s")
    pope = {"accuracy": 0.9, "precision": 0.9, "recall": 0.9, "f1": 0.9, "yes_ratio": 0.5, "n": 30}
    hs.write_comparison(stage_result(hs.STAGE, model="organism:hallucinating", n_test=30, n_train=20,
                                     settings={"steer_layer": 2, "context_layer": 1, "positions": "all"},
                                     rows=[dict(pope, method=m, split="all") for m in ("none", "L2S")],
                                     reference=[dict(pope, method="original organism", split="all")],
                                     side_effects=[{"method": "L2S", "shape": 0.9, "shape_change": 0.0, "color": 0.8,
                                                    "color_change": -0.01}],
                                     goals={"yes_ratio_gap": {"value": 0.0, "bar": 0.05, "holds": True}}),
                         run / "hallucination")
    (run / "captions").mkdir()
    atomic_write_json(run / "captions" / "result.json",
                      stage_result("table", title="Caption steering", about="Captions steered towards colours.",
                                   header=["captions by", "name a colour"], rows=[["original, alpha 1", 0.4]]))
    (run / "evaluation").mkdir()
    atomic_write_json(run / "evaluation" / "result.json", stage_result("evaluate", task="vqa", accuracy=0.75, n=12))
    return run
