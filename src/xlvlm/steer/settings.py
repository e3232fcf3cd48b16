"""A sweep's settings (:class:`SweepSettings`), how it steered, in words (read by the sweep's
own summary and by the report), and the bound on its strengths (:data:`MAX_ALPHA`, checked by
the command line and the server).

Its own module so that the report (which renders a sweep's ``result.json``) does not import the sweep's
runner (:mod:`xlvlm.steer.run`, generation and plotting).
"""

from __future__ import annotations

from dataclasses import dataclass

# Steering adds alpha times a direction to hidden states whose norms are at most a few thousand
# (large models' outlier dimensions included): beyond a million the states are swamped by the
# vector whatever its norm, and float16 (max 65504) overflows to inf long before. A bound, not
# just "finite", so that a typo such as 1e40 is refused instead of generating empty answers.
MAX_ALPHA = 1e6


@dataclass(frozen=True)
class SweepSettings:
    """What :func:`~xlvlm.steer.run.sweep` and :func:`~xlvlm.steer.run.sweep_stores` run.

    How every configuration steers and generates: ``positions``, ``operator`` (a name or a
    function), ``condition`` (a Condition or None), ``max_new_tokens``, ``batch_size``. The
    scorer's answers (``source_answer`` -> ``target_answer``, :class:`~xlvlm.steer.run.AnswerShift`).
    How ``sweep_stores`` makes its vectors: ``methods`` (names of
    ``xlvlm.steer.aggregators.AGGREGATORS``), ``normalize`` (unit norm), and the options a method
    takes (``n_concepts``, ``concept_method``, ``seed``: the concept method's dictionary).
    ``result.json`` records positions, operator, normalize, condition and max_new_tokens (and the
    answers).
    """

    positions: str | int = "all"
    operator: object = "add"
    condition: object = None
    max_new_tokens: int = 5
    batch_size: int = 16
    source_answer: str = "yes"
    target_answer: str = "no"
    methods: tuple = ("mean-diff",)
    normalize: bool = False
    n_concepts: int = 8
    concept_method: str = "kmeans"
    seed: int = 0


def describe_settings(settings: dict) -> str:
    """One line: where, how and when the sweep steered (``settings``: the sweep result's ``settings``)."""
    condition = settings.get("condition")
    when = (f"only samples past the condition at layer {condition.get('layer')}" if isinstance(condition, dict)
            else "every sample (no condition)")
    return (f"Positions: {settings.get('positions', 'all')}; operator: {settings.get('operator', 'add')}"
            f"{', unit-norm vectors' if settings.get('normalize') else ''}; steered: {when}.")
