"""The number patching recovers: read from the logits at the first answer token.

``"logit-diff"``: logit(first token of answer A) - logit(first token of answer B) at the
position that predicts the answer (the last prompt token), i.e. ``vlm.logit_difference`` for
single-token answers (the softmax normaliser cancels). ``"prob"``: the probability of answer
A's first token there. Recovery of a patched run:
``(m(patched) - m(corrupted)) / (m(clean) - m(corrupted))``: 0 is the corrupted run, 1 the clean one.
"""

from __future__ import annotations

import torch

from xlvlm.errors import XlvlmError
from xlvlm.patching.registry import METRICS


def check_metric(metric: str, answers: tuple[str, ...], pair_id: str) -> None:
    if metric not in METRICS:
        raise XlvlmError(f"metric {metric!r}: use one of {', '.join(METRICS)}")
    if metric == "logit-diff" and len(answers) != 2:
        raise XlvlmError(f"pair {pair_id!r}: the logit-diff metric needs two answers (clean, corrupted), got "
                         f"{len(answers)}; give both samples an 'answer' or pass --answers A,B, or use --metric prob")


def answer_token(vlm, sample: dict, answer: str) -> int:
    """The id of ``answer``'s first token as the template writes it after ``sample``'s prompt."""
    batch = vlm.encode([sample], answers=[answer])
    start = batch.prompt_lengths[0]
    if start >= batch.lengths[0]:
        raise XlvlmError(f"answer {answer!r}: the template writes no token for it; use a non-empty answer")
    return int(batch.input_ids[0, batch.offsets[0] + start])


def metric_values(logits: torch.Tensor, targets: torch.Tensor, metric: str) -> torch.Tensor:
    """logits (B, V) at the answer position, targets (B, 2) answer token ids -> (B,) metric."""
    logits = logits.float()
    first = logits.gather(1, targets[:, :1]).squeeze(1)
    if metric == "prob":
        return logits.softmax(dim=-1).gather(1, targets[:, :1]).squeeze(1)
    return first - logits.gather(1, targets[:, 1:2]).squeeze(1)


def recovery(patched: torch.Tensor, clean: torch.Tensor, corrupted: torch.Tensor) -> torch.Tensor:
    """(m(patched) - m(corrupted)) / (m(clean) - m(corrupted)), broadcast; NaN where clean and
    corrupted agree (nothing to recover)."""
    gap = clean - corrupted
    gap = torch.where(gap == 0, torch.full_like(gap, float("nan")), gap)
    return (patched - corrupted) / gap
