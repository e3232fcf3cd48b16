"""The Steering protocol: what the steering hooks need from any kind of steering.

A kind of steering names the layers it steers and the size D of its vectors, and gives the
vector(s) for a batch at those layers::

    batch_vectors(states, sample_ids) -> {layer key: (D,) the same for every sample,
                                                     or (B, D), row b for sample b}

``states`` (B, D): each sample's state at ``context_layer`` (its last real token at prefill) when
the kind reads one, else None. ``sample_ids``: the batch's ids when ``needs_ids``, else None. A
kind that reads neither is fixed: the hooks ask for its vectors once, when they are added; the
others are asked at every prefill and their rows kept for the decode steps that follow.
``condition``: a :class:`~xlvlm.steer.condition.Condition` that picks the samples to steer, or
None (:class:`Gated` puts any kind behind one).

Implemented by :class:`~xlvlm.steer.vector.SteeringVector` (fixed),
:class:`~xlvlm.steer.per_sample.PerSampleSteering` (by sample id),
:class:`~xlvlm.steer.learned.LearnedSteering` (from a context state) and :class:`Gated`. The
hooks (:func:`xlvlm.steer.apply.steering`) take any of them; a new kind implements these five
names and inherits :meth:`SteeringBase.apply`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import torch

from xlvlm.errors import XlvlmError


@runtime_checkable
class Steering(Protocol):
    """What :func:`xlvlm.steer.apply.steering` reads (see the module docstring)."""

    context_layer: str | None
    needs_ids: bool
    condition: object | None

    @property
    def layers(self) -> list[str]: ...

    @property
    def hidden_size(self) -> int: ...

    def batch_vectors(self, states: torch.Tensor | None,
                      sample_ids: Sequence[str] | None) -> dict[str, torch.Tensor]: ...


class SteeringBase:
    """Defaults of the protocol (no ids, no gate) and ``apply``, shared by the kinds of steering.
    (``context_layer`` is each kind's own: a dataclass field of learned steering.)"""

    needs_ids: bool = False
    condition = None
    what: str = "steering"  # how errors name this kind

    def apply(self, vlm, alpha: float = 1.0, positions="all", operator="add", condition=None):
        """Steer ``vlm`` now; returns the handle (:class:`~xlvlm.steer.apply.SteeringHandle`).
        ``with steering.apply(vlm, alpha=2): ...`` steers inside the block; ``handle =
        steering.apply(vlm, alpha=2)`` until ``handle.remove()``. Either way the hooks removed are
        exactly those added.

        vlm: the VLM of ``xlvlm.load_vlm`` (a bare transformers model is refused).
        positions: "all", "generated", "from-last-prompt", or an int prompt index.
        operator: a function ``(hidden, vector, alpha) -> delta`` (:mod:`xlvlm.steer.operators`:
        ``add``, ``project_out``) or its name ("add", "project-out").
        condition: a :class:`~xlvlm.steer.condition.Condition` (only the samples it picks are
        steered) or None.
        """
        from xlvlm.steer.apply import steering

        return steering(vlm, gated(self, condition), alpha=alpha, positions=positions, operator=operator)


class Wrapping(SteeringBase):
    """A kind of steering made around another one (``self.steering``): the protocol's names are
    the wrapped kind's unless the wrapper says otherwise."""

    steering: Steering

    @property
    def layers(self) -> list[str]:
        return self.steering.layers

    @property
    def hidden_size(self) -> int:
        return self.steering.hidden_size

    @property
    def context_layer(self) -> str | None:
        return getattr(self.steering, "context_layer", None)

    @property
    def needs_ids(self) -> bool:
        return getattr(self.steering, "needs_ids", False)

    @property
    def what(self) -> str:
        return getattr(self.steering, "what", "steering")

    @property
    def metadata(self) -> dict:
        return getattr(self.steering, "metadata", {})

    def batch_vectors(self, states, sample_ids):
        return self.steering.batch_vectors(states, sample_ids)


@dataclass
class Gated(Wrapping):
    """Any kind of steering behind a condition: only the samples the condition picks are steered."""

    steering: Steering
    condition: object  # a Condition

    def __post_init__(self):
        if self.condition is None:
            raise XlvlmError("Gated needs a condition (a Condition)")
        if getattr(self.steering, "condition", None) is not None:
            raise XlvlmError("this steering is already gated by a condition; give one condition")


def gated(steering: Steering, condition) -> Steering:
    """``steering`` behind ``condition`` (:class:`Gated`), or ``steering`` itself without one."""
    return steering if condition is None else Gated(steering, condition)
