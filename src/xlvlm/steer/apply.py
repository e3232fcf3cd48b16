"""Applying steering vectors during forward passes and generation.

Every call of the model goes through a pre-hook on the top-level model that reads the 2-D
attention mask (B, past + t) and works out, for the t positions of this call, each one's real
index in its own sample (left padding and the KV cache included): ``cumsum(mask) - 1``. A call
whose t equals the mask's length starts a new sequence (prefill); it fixes each sample's
prompt length. Layer hooks then edit only the positions the ``positions`` rule selects:

  "all"            every position
  "generated"      tokens produced by generation (index >= prompt length)
  "from-last-prompt" the last prompt token and every generated token
  int k            index >= k (k counts prompt tokens, image tokens included)

and only the samples an optional :class:`~xlvlm.steer.condition.Condition` lets through.
The handle (:class:`Steering`) removes exactly the hooks it added: on ``remove()``, at the end of
a ``with`` block (even on error), or at once if registering one of them fails.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xlvlm.choices import POSITION_RULES
from xlvlm.errors import XlvlmError
from xlvlm.hooks import attach, resolve_layer
from xlvlm.steer.operators import operator_named



@dataclass
class _CallState:
    """What the model pre-hook learnt about the current call (shared by the hooks of one handle)."""

    real_index: torch.Tensor | None = None       # (B, t) index of each position in its sample
    prompt_lengths: torch.Tensor | None = None   # (B,) set at prefill
    steer_samples: torch.Tensor | None = None    # (B,) bool, set by a condition at prefill
    condition_pending: bool = False


def _parse_positions(positions) -> str | int:
    if isinstance(positions, int) or (isinstance(positions, str) and positions.lstrip("-").isdigit()):
        return int(positions)
    if positions not in POSITION_RULES:
        raise XlvlmError(f"unknown positions {positions!r}: use one of {POSITION_RULES} or a prompt index")
    return positions


def _position_mask(state: _CallState, rule, t: int, batch: int, device) -> torch.Tensor | None:
    """(B, t, 1) float mask of positions to steer, or None for all positions and samples."""
    mask = None
    decode_step = state.real_index is not None and t == 1 and state.prompt_lengths is not None
    if rule in ("generated", "from-last-prompt") and decode_step and state.steer_samples is None:
        return None  # a decode step feeds back a generated token: every position qualifies
    if rule != "all":
        if state.real_index is None or state.prompt_lengths is None:
            raise XlvlmError("positions other than 'all' need the model to be called with an attention mask")
        index = state.real_index
        start = {"generated": state.prompt_lengths, "from-last-prompt": state.prompt_lengths - 1}.get(rule)
        start = torch.full_like(state.prompt_lengths, rule) if start is None else start
        mask = index >= start[:, None]
    if state.steer_samples is not None:
        chosen = state.steer_samples[:, None].expand(batch, t)
        mask = chosen if mask is None else mask & chosen
    return None if mask is None else mask.to(device).unsqueeze(-1)


class Steering:
    """Hooks that steer ``vlm`` until :meth:`remove` (or the end of a ``with`` block).

    Made by :meth:`SteeringVector.apply`: ``handle = sv.apply(vlm, alpha=2)`` steers at once;
    ``handle.remove()`` takes exactly its hooks off again (idempotent). As a context manager it
    removes them on exit, even on error.
    """

    def __init__(self, vlm, vectors: dict[str, torch.Tensor], alpha: float = 1.0, positions="all",
                 operator="add", condition=None):
        from xlvlm.extract.run import require_vlm

        require_vlm(vlm, "steering (SteeringVector.apply)")
        self._handles: list = []
        hooks = _steering_hooks(vlm, vectors, alpha, positions, operator_named(operator), condition)
        try:
            for register in hooks:
                self._handles.append(register())
        except BaseException:
            self.remove()
            raise

    @property
    def active(self) -> bool:
        return bool(self._handles)

    def remove(self) -> None:
        """Take off every hook this handle added (and nothing else)."""
        handles, self._handles = self._handles, []
        for handle in handles:
            handle.remove()

    def __enter__(self) -> "Steering":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"Steering(active={self.active})"


def _check_fits(vlm, refs, vectors: list[torch.Tensor], condition, rule) -> None:
    """Vectors and condition of the model's hidden size; a condition read before what it gates."""
    for ref, vector in zip(refs, vectors):
        if vector.shape[-1] != vlm.hidden_size:
            raise XlvlmError(f"steering vector for layer {ref.key} has size {vector.shape[-1]} but the model's "
                             f"hidden size is {vlm.hidden_size}; compute it from this model's features")
    if condition is not None and condition.direction.shape[-1] != vlm.hidden_size:
        raise XlvlmError(f"condition direction has size {condition.direction.shape[-1]} but the model's hidden size "
                         f"is {vlm.hidden_size}; learn it from this model's features")
    if condition is not None and rule not in ("generated",):
        deepest_first = min((r.depth for r in refs if r.depth is not None), default=None)
        cond_depth = resolve_layer(vlm, condition.layer).depth
        if deepest_first is not None and cond_depth is not None and cond_depth >= deepest_first:
            raise XlvlmError(f"condition layer {condition.layer} must come before the steered layers "
                             f"(or steer positions='generated') so the decision exists when prompt tokens are steered")


def _steering_hooks(vlm, vectors: dict[str, torch.Tensor], alpha: float, positions, operator, condition) -> list:
    """Check everything, then return the registrations (callables returning hook handles) in order.

    The edit at each layer key of ``vectors`` ((D,) each) is ``h + operator(h, v, alpha)`` on the
    positions the rule selects (see the module docstring).
    """
    rule = _parse_positions(positions)
    refs = [resolve_layer(vlm, key) for key in vectors]
    _check_fits(vlm, refs, list(vectors.values()), condition, rule)
    state = _CallState()
    device, dtype = vlm.device, vlm.dtype
    prepared = {ref.key: vector.detach().to(device=device, dtype=torch.float32).to(dtype)
                for ref, vector in zip(refs, vectors.values())}

    def model_pre_hook(module, args, kwargs):
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        embeds = kwargs.get("inputs_embeds")
        t = (input_ids if input_ids is not None else embeds).shape[1]
        mask = kwargs.get("attention_mask")
        if mask is None or mask.dim() != 2:
            # HF drops the mask when nothing is padded (batch size 1): then the cache tells how
            # many positions came before this call.
            cache = kwargs.get("past_key_values", kwargs.get("cache"))
            past = int(cache.get_seq_length()) if cache is not None and hasattr(cache, "get_seq_length") else 0
            batch = (input_ids if input_ids is not None else embeds).shape[0]
            mask = torch.ones(batch, past + t, dtype=torch.long, device=device)
        index = (mask.long().cumsum(dim=1) - 1)[:, -t:]
        state.real_index = index
        if t == mask.shape[1]:  # a new sequence: prefill or a plain forward
            state.prompt_lengths = mask.long().sum(dim=1)
            if condition is not None:
                state.steer_samples = None
                state.condition_pending = True

    def make_layer_hook(key: str):
        vector = prepared[key]

        def hook(hidden):
            if condition is not None and state.condition_pending:
                return None  # the decision is taken at the condition layer of this prefill
            mask = _position_mask(state, rule, hidden.shape[1], hidden.shape[0], hidden.device)
            delta = operator(hidden, vector, alpha)
            return hidden + (delta if mask is None else delta * mask.to(hidden.dtype))

        return hook

    def condition_hook(hidden):
        if state.condition_pending:
            index = state.real_index
            last = index.argmax(dim=1)  # the last real token of each sample in this call
            states = hidden[torch.arange(hidden.shape[0], device=hidden.device), last.to(hidden.device)]
            state.steer_samples = condition.decide(states).to(hidden.device)
            state.condition_pending = False
        return None

    registrations = [lambda: vlm.model.register_forward_pre_hook(model_pre_hook, with_kwargs=True)]
    if condition is not None:
        registrations.append(lambda: attach(resolve_layer(vlm, condition.layer), condition_hook))
    registrations += [lambda ref=ref: attach(ref, make_layer_hook(ref.key)) for ref in refs]
    return registrations


def steering(vlm, vectors: dict[str, torch.Tensor], alpha: float = 1.0, positions="all", operator="add",
             condition=None) -> Steering:
    """Steer ``vlm`` with ``vectors`` ((D,) per layer key) now; returns the handle (see :class:`Steering`)."""
    return Steering(vlm, vectors, alpha=alpha, positions=positions, operator=operator, condition=condition)
