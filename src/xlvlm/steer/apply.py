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
Hooks are removed in a ``finally``: leaving the context restores the model exactly.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from xlvlm.choices import OPERATORS, POSITION_RULES
from xlvlm.errors import XlvlmError
from xlvlm.hooks import attach, resolve_layer



@dataclass
class _CallState:
    """What the model pre-hook learnt about the current call."""

    real_index: torch.Tensor | None = None       # (B, t) index of each position in its sample
    prompt_lengths: torch.Tensor | None = None   # (B,) set at prefill
    steer_samples: torch.Tensor | None = None    # (B,) bool, set by a condition at prefill
    condition_pending: bool = False
    calls: int = 0
    notes: dict = field(default_factory=dict)


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


@contextmanager
def steering(vlm, vectors: dict[str, torch.Tensor], alpha: float = 1.0, positions="all",
             operator: str = "add", condition=None):
    """Edit the residual stream at each layer key of ``vectors`` ((D,) each) while inside.

    operator "add": h + alpha * v. "project-out": h - alpha * (h . v_hat) v_hat (alpha = 1
    removes the component along v entirely).
    """
    if operator not in OPERATORS:
        raise XlvlmError(f"unknown operator {operator!r}: use one of {OPERATORS}")
    rule = _parse_positions(positions)
    refs = [resolve_layer(vlm, key) for key in vectors]
    for ref, vector in zip(refs, vectors.values()):
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
    state = _CallState()
    device, dtype = vlm.device, vlm.dtype
    prepared = {}
    for ref, vector in zip(refs, vectors.values()):
        v = vector.detach().to(device=device, dtype=torch.float32)
        prepared[ref.key] = (v.to(dtype), (v / v.norm().clamp_min(1e-12)).to(dtype))

    def model_pre_hook(module, args, kwargs):
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        embeds = kwargs.get("inputs_embeds")
        t = (input_ids if input_ids is not None else embeds).shape[1]
        mask = kwargs.get("attention_mask")
        state.calls += 1
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
        vector, unit = prepared[key]

        def hook(hidden):
            batch, t = hidden.shape[0], hidden.shape[1]
            if condition is not None and state.condition_pending:
                return None  # the decision is taken at the condition layer of this prefill
            mask = _position_mask(state, rule, t, batch, hidden.device)
            if operator == "add":
                delta = alpha * vector
                delta = delta if mask is None else delta * mask.to(hidden.dtype)
            else:
                delta = -alpha * (hidden @ unit)[..., None] * unit
                delta = delta if mask is None else delta * mask.to(hidden.dtype)
            return hidden + delta

        return hook

    def condition_hook(hidden):
        if state.condition_pending:
            index = state.real_index
            last = index.argmax(dim=1)  # the last real token of each sample in this call
            states = hidden[torch.arange(hidden.shape[0], device=hidden.device), last.to(hidden.device)]
            state.steer_samples = condition.decide(states).to(hidden.device)
            state.condition_pending = False
        return None

    handles = []
    try:
        handles.append(vlm.model.register_forward_pre_hook(model_pre_hook, with_kwargs=True))
        if condition is not None:
            handles.append(attach(resolve_layer(vlm, condition.layer), condition_hook))
        for ref in refs:
            handles.append(attach(ref, make_layer_hook(ref.key)))
        yield state
    finally:
        for handle in handles:
            handle.remove()
