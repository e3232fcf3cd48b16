"""Conditional steering: steer only the samples whose state projects past a learnt threshold.

As in activation steering for LLMs with a condition vector: a direction c at a condition layer
separates labelled examples (e.g. yes/no questions from shape and colour questions); at
prefill each sample's last prompt state h is projected, and the sample is steered when
``h . c_hat > threshold`` (or below it, with ``above=False``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from xlvlm.errors import XlvlmError
from xlvlm.io import atomic_save_tensors, refuse_existing_output
from xlvlm.layerkeys import layer_key
from xlvlm.steer.registry import CONDITION_METHODS


@dataclass
class Condition:
    layer: str
    direction: torch.Tensor  # (D,) unit vector
    threshold: float
    above: bool = True

    def __post_init__(self):
        self.layer = layer_key(self.layer)  # one layer-key rule: 3 and "3" are the same layer

    def __repr__(self) -> str:
        side = ">" if self.above else "<="
        return (f"Condition(layer={self.layer!r}, steer when projection {side} {self.threshold:.4g}, "
                f"direction of size {self.direction.shape[-1]})")

    def decide(self, states: torch.Tensor) -> torch.Tensor:
        """(B, D) states -> (B,) bool: which samples to steer."""
        projection = states.float() @ self.direction.to(states.device, torch.float32)
        return projection > self.threshold if self.above else projection <= self.threshold

    @classmethod
    def learn(cls, positive: torch.Tensor, negative: torch.Tensor, layer, method: str = "lda",
              shrinkage: float = 0.1) -> "Condition":
        """Learn a direction and threshold from (N+, D) states to steer and (N-, D) to leave alone.

        method "lda": Fisher's direction S^-1 (mean+ - mean-) with the pooled covariance S shrunk
        towards (trace S / D) I by ``shrinkage``; "mean-diff": the difference of means. The
        threshold maximises training accuracy (midpoint between neighbouring projections).
        """
        positive, negative = positive.float(), negative.float()
        if positive.shape[0] == 0 or negative.shape[0] == 0:
            raise XlvlmError("a condition needs examples on both sides (steer and leave alone)")
        if positive.dim() != 2 or negative.dim() != 2 or positive.shape[1] != negative.shape[1]:
            raise XlvlmError(f"condition examples have shapes {tuple(positive.shape)} and {tuple(negative.shape)}; "
                             f"both need (N, D) with the same D (states of the same model and layer)")
        if not (torch.isfinite(positive).all() and torch.isfinite(negative).all()):
            raise XlvlmError("NaN/inf in condition examples: use features(layer, present_only=True)")
        direction = positive.mean(0) - negative.mean(0)
        if not 0.0 <= shrinkage <= 1.0:
            raise XlvlmError(f"shrinkage must be between 0 and 1, not {shrinkage}")
        if method == "lda":
            centred = torch.cat([positive - positive.mean(0), negative - negative.mean(0)]).double()
            cov = centred.T @ centred / max(1, centred.shape[0] - 2)
            d = cov.shape[0]
            cov = (1 - shrinkage) * cov + shrinkage * cov.trace() / d * torch.eye(d, dtype=cov.dtype)
            # Without shrinkage, N examples give a covariance of rank at most N - 2; a zero trace
            # means constant states. Either way S has no inverse.
            singular = (shrinkage == 0 and centred.shape[0] - 2 < d) or float(cov.trace()) == 0.0
            try:
                if singular:
                    raise torch.linalg.LinAlgError("singular")
                direction = torch.linalg.solve(cov, direction.double()).float()
            except torch.linalg.LinAlgError:
                raise XlvlmError(f"the examples' covariance is singular ({len(centred)} examples in {d} dimensions, "
                                 f"shrinkage {shrinkage}): raise shrinkage, or use method='mean-diff'") from None
        elif method not in CONDITION_METHODS:
            raise XlvlmError(f"unknown condition method {method!r}: use 'lda' or 'mean-diff'")
        direction = direction / direction.norm().clamp_min(1e-12)
        if not bool(torch.isfinite(direction).all()):
            raise XlvlmError("the condition direction overflows float32 (NaN/inf); the examples' values are too "
                             "large: check the stores with FeatureStore.verify()")
        scores = torch.cat([positive @ direction, negative @ direction])
        labels = torch.cat([torch.ones(len(positive)), torch.zeros(len(negative))])
        order = scores.argsort()
        scores, labels = scores[order], labels[order]
        # steering everything above candidate k: correct = negatives at or below + positives above
        neg_below = torch.cumsum(1 - labels, 0)
        pos_above = labels.sum() - torch.cumsum(labels, 0)
        correct = neg_below + pos_above
        k = int(correct.argmax())
        threshold = float((scores[k] + scores[k + 1]) / 2) if k + 1 < len(scores) else float(scores[k])
        return cls(str(layer), direction, threshold, above=True)

    def to_dict(self) -> dict:
        return {"layer": self.layer, "threshold": self.threshold, "above": self.above}

    # ---- files -----------------------------------------------------------------------------
    def save(self, path, overwrite: bool = False) -> Path:
        """Write a safetensors file: the direction (D,), and layer, threshold and side as JSON in
        the header. NaN or inf is refused (nothing is written); so is an existing file, unless
        ``overwrite=True``."""
        path = Path(path)
        refuse_existing_output(path, overwrite=overwrite, option="path")
        if not (bool(torch.isfinite(self.direction).all()) and math.isfinite(self.threshold)):
            raise XlvlmError(f"{path}: not written: the condition's direction or threshold is NaN or inf")
        atomic_save_tensors(path, {"direction": self.direction.float()},
                            metadata={"xlvlm_condition": json.dumps(self.to_dict())})
        return path

    @classmethod
    def load(cls, path) -> "Condition":
        """Read a file of :meth:`save`: a finite float direction (D,), and the layer, threshold and
        side as JSON in the header. Anything else is a one-line XlvlmError."""
        path = Path(path)
        if not path.is_file():
            raise XlvlmError(f"{path}: condition file not found; make one with `xlvlm steer condition`")
        try:
            with safe_open(path, framework="pt") as handle:
                meta = json.loads((handle.metadata() or {})["xlvlm_condition"])
                direction = handle.get_tensor("direction")
        except Exception as exc:  # safetensors raises its own error types; json and a missing key their own
            raise XlvlmError(f"{path}: not a readable condition file ({type(exc).__name__}); recompute it with "
                             f"`xlvlm steer condition`")

        def bad(what: str):
            raise XlvlmError(f"{path}: {what}; recompute it with `xlvlm steer condition`")

        if not isinstance(meta, dict):
            bad("its 'xlvlm_condition' metadata is not a JSON object")
        layer, threshold, above = meta.get("layer"), meta.get("threshold"), meta.get("above", True)
        if not isinstance(layer, str) or not layer:
            bad("field 'layer' is not a layer name")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            bad(f"field 'threshold' is {str(threshold)[:40]!r}, not a finite number")
        if not isinstance(above, bool):
            bad("field 'above' is not true or false")
        if direction.dim() != 1 or not direction.is_floating_point() or direction.numel() == 0:
            bad(f"'direction' has shape {tuple(direction.shape)} ({direction.dtype}), not a float vector (D,)")
        if not bool(torch.isfinite(direction).all()):
            bad("'direction' holds NaN or inf")
        return cls(layer, direction, float(threshold), above)


def save_condition(condition: Condition, path, overwrite: bool = False) -> Path:
    """``condition.save(path, overwrite)`` (kept for scripts written against it)."""
    return condition.save(path, overwrite=overwrite)


def load_condition(path) -> Condition:
    """``Condition.load(path)`` (kept for scripts written against it)."""
    return Condition.load(path)


