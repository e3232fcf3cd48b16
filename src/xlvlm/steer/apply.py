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

What is added comes from any kind of steering (the protocol of :mod:`xlvlm.steer.protocol`):
either fixed, (D,) for every sample (a ``SteeringVector``), or decided per sample at each
prefill, (B, D) for the B samples of the call, kept for the decode steps that follow: from each
sample's own state at a context layer (L2S, :class:`~xlvlm.steer.learned.LearnedSteering`) or
from the samples' ids (the P2S oracle, :class:`~xlvlm.steer.per_sample.PerSampleSteering`; the
ids of the batch in flight come from :func:`xlvlm.models.base.batch_in_flight`). A condition
and a context layer both read the state of each sample's last real token at prefill: in
generation, its last prompt token.

The handle (:class:`SteeringHandle`) removes exactly the hooks it added: on ``remove()``, at the end of
a ``with`` block (even on error), or at once if registering one of them fails.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xlvlm.errors import XlvlmError
from xlvlm.hooks import attach, require_vlm, resolve_layer
from xlvlm.models.base import batch_in_flight
from xlvlm.steer.operators import operator_named
from xlvlm.steer.registry import POSITION_RULES


@dataclass
class _CallState:
    """What the model pre-hook learnt about the current call (shared by the hooks of one handle)."""

    real_index: torch.Tensor | None = None       # (B, t) index of each position in its sample
    prompt_lengths: torch.Tensor | None = None   # (B,) set at prefill
    steer_samples: torch.Tensor | None = None    # (B,) bool, set by a condition at prefill
    condition_pending: bool = False
    row_vectors: dict | None = None              # {key: (B, 1, D) or (D,)}, set at prefill per sample
    rows_pending: bool = False
    batch_ids: list | None = None                # the ids of the batch in flight, at prefill
    touched: torch.Tensor | None = None          # (B,) bool: samples of this sequence edited so far
    sequence_rows: int = 0                       # B of this sequence
    rows_seen: int = 0                           # samples of the finished sequences, and how many
    rows_steered: int = 0                        # of them had at least one position edited

    def fold(self) -> None:
        """Count the current sequence's samples into rows_seen / rows_steered (at its end)."""
        self.rows_seen += self.sequence_rows
        self.rows_steered += 0 if self.touched is None else int(self.touched.sum())
        self.touched, self.sequence_rows = None, 0

    def touch(self, mask: torch.Tensor | None, batch: int) -> None:
        """Record which samples a layer edit reached (mask (B, t, 1) or None for all)."""
        rows = torch.ones(batch, dtype=torch.bool) if mask is None else mask.reshape(batch, -1).any(1).cpu()
        self.touched = rows if self.touched is None or self.touched.shape != rows.shape else self.touched | rows


def parse_positions(positions) -> str | int:
    """A positions rule as the hooks use it: one of POSITION_RULES, or a prompt index (int)."""
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


def _last_real_states(state: _CallState, hidden: torch.Tensor) -> torch.Tensor:
    """(B, t, D) -> (B, D): each sample's state at its last real token of this call."""
    last = state.real_index.argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last.to(hidden.device)]


class SteeringHandle:
    """Hooks that steer ``vlm`` until :meth:`remove` (or the end of a ``with`` block).

    Made by ``apply`` of any kind of steering (:meth:`SteeringVector.apply`, ...) or
    :func:`steering`: ``handle = sv.apply(vlm, alpha=2)`` steers at once; ``handle.remove()``
    takes exactly its hooks off again (idempotent). As a context manager it removes them on
    exit, even on error.
    """

    def __init__(self, vlm, steering, alpha: float = 1.0, positions="all", operator="add"):
        require_vlm(vlm, "steering (SteeringVector.apply)")
        self._handles: list = []
        self._hooks = _Hooks(vlm, steering, alpha, parse_positions(positions), operator_named(operator))
        try:
            for register in self._hooks.registrations():
                self._handles.append(register())
        except BaseException:
            self.remove()
            raise

    @property
    def active(self) -> bool:
        return bool(self._handles)

    def counts(self) -> tuple[int, int]:
        """(samples steered, samples seen) so far: a sample counts as steered when at least one
        of its positions was edited (a position rule or condition may leave it alone)."""
        state = self._hooks.state
        return state.rows_steered + (0 if state.touched is None else int(state.touched.sum())), \
            state.rows_seen + state.sequence_rows

    def remove(self) -> None:
        """Take off every hook this handle added (and nothing else)."""
        handles, self._handles = self._handles, []
        for handle in handles:
            handle.remove()

    def __enter__(self) -> "SteeringHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"SteeringHandle(active={self.active})"


def _check_condition(vlm, refs, condition, rule) -> None:
    """A condition of the model's hidden size, read before what it gates."""
    if condition is not None and condition.direction.shape[-1] != vlm.hidden_size:
        raise XlvlmError(f"condition direction has size {condition.direction.shape[-1]} but the model's hidden size "
                         f"is {vlm.hidden_size}; learn it from this model's features")
    if condition is not None and rule not in ("generated",):
        deepest_first = min((r.depth for r in refs if r.depth is not None), default=None)
        cond_depth = resolve_layer(vlm, condition.layer).depth
        if deepest_first is not None and cond_depth is not None and cond_depth >= deepest_first:
            raise XlvlmError(f"condition layer {condition.layer} must come before the steered layers "
                             f"(or steer positions='generated') so the decision exists when prompt tokens are steered")


def check_steering_range(vectors: dict[str, torch.Tensor], alpha: float, dtype: torch.dtype, what: str) -> None:
    """Refuse steering whose edit would overflow the model's arithmetic: an entry of alpha x v past
    the largest number of ``dtype``, or a norm of alpha x v past :data:`xlvlm.io.MAX_VECTOR_NORM`
    (the squares of a layer norm overflow). vectors: {layer key: (D,) or (B, D)}."""
    from xlvlm.io import MAX_VECTOR_NORM

    largest_entry = torch.finfo(dtype).max if dtype.is_floating_point else float("inf")
    for key, vector in vectors.items():
        scaled = vector.detach().double() * abs(float(alpha))
        if not bool(torch.isfinite(scaled).all()):
            raise XlvlmError(f"{what}: the vector for layer {key} holds NaN or inf; recompute it")
        entry, norm = float(scaled.abs().max()), float(torch.linalg.vector_norm(scaled, dim=-1).max())
        if entry > largest_entry or norm > MAX_VECTOR_NORM:
            raise XlvlmError(f"{what}: alpha x the vector for layer {key} reaches {entry:.3g} (norm {norm:.3g}), past "
                             f"what the model's {str(dtype).replace('torch.', '')} arithmetic holds; lower --alpha "
                             f"or recompute the vector")


def _check_context(vlm, refs, context_layer: str) -> None:
    """A context layer read at or before every steered layer: its state exists when they are steered
    (at the same layer, the state is read before the layer's own edit)."""
    depth = resolve_layer(vlm, context_layer).depth
    first = min((r.depth for r in refs if r.depth is not None), default=None)
    if depth is not None and first is not None and depth > first:
        raise XlvlmError(f"context layer {context_layer} comes after the steered layer {first}; learn the steering "
                         f"with a context layer at or before the layer it steers")


def _check_vector(vlm, steering, key: str, vector: torch.Tensor, batch: int | None) -> None:
    """A vector of the model's hidden size: (D,), or (B, D) for a batch of B decided per sample."""
    if vector.shape[-1] != vlm.hidden_size:
        raise XlvlmError(f"{steering.what}: the vector for layer {key} has size {vector.shape[-1]} but the model's "
                         f"hidden size is {vlm.hidden_size}; compute it from this model's features")
    if vector.dim() != 1 and (batch is None or tuple(vector.shape) != (batch, vlm.hidden_size)):
        raise XlvlmError(f"{steering.what} gave vectors of shape {tuple(vector.shape)} for layer {key}; "
                         f"expected ({vlm.hidden_size},) or ({batch}, {vlm.hidden_size}) for this batch and model")


class _Hooks:
    """The hooks of one steering handle and the state of the current call they share."""

    def __init__(self, vlm, steering, alpha: float, rule, operator):
        self.vlm, self.alpha, self.rule, self.operator = vlm, alpha, rule, operator
        self.steering, self.condition = steering, steering.condition
        if steering.hidden_size != vlm.hidden_size:
            raise XlvlmError(f"{steering.what}: its vectors have size {steering.hidden_size} but the model's hidden "
                             f"size is {vlm.hidden_size}; compute them from this model's features")
        self.keys = list(steering.layers)  # the steering's own keys, as batch_vectors names them
        self.refs = [resolve_layer(vlm, key) for key in self.keys]
        self.context = steering.context_layer
        self.per_sample = self.context is not None or steering.needs_ids
        fixed = {} if self.per_sample else steering.batch_vectors(None, None)
        for key in self.keys if fixed else ():
            _check_vector(vlm, steering, key, fixed[key], None)
        if fixed:
            check_steering_range(fixed, alpha, vlm.dtype, steering.what)
        _check_condition(vlm, self.refs, self.condition, rule)
        if self.context is not None:
            _check_context(vlm, self.refs, self.context)
        self.state = _CallState()
        self.fixed = {ref.key: fixed[key].detach().to(device=vlm.device, dtype=torch.float32).to(vlm.dtype)
                      for key, ref in zip(self.keys, self.refs) if fixed}

    def registrations(self) -> list:
        vlm = self.vlm
        registrations = [lambda: vlm.model.register_forward_pre_hook(self.model_pre_hook, with_kwargs=True)]
        if self.condition is not None:
            registrations.append(lambda: attach(resolve_layer(vlm, self.condition.layer), self.condition_hook))
        if self.context is not None:
            # Before the layer hooks: at the same layer, the state is read before it is steered.
            registrations.append(lambda: attach(resolve_layer(vlm, self.context), self.context_hook))
        registrations += [lambda ref=ref: attach(ref, self.layer_hook(ref.key)) for ref in self.refs]
        return registrations

    # ---- every call of the model -------------------------------------------------------------
    def model_pre_hook(self, module, args, kwargs):
        state = self.state
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
            mask = torch.ones(batch, past + t, dtype=torch.long, device=self.vlm.device)
        state.real_index = (mask.long().cumsum(dim=1) - 1)[:, -t:]
        if t == mask.shape[1]:  # a new sequence: prefill or a plain forward
            self._start_sequence(mask, input_ids)

    def _start_sequence(self, mask: torch.Tensor, input_ids) -> None:
        """At prefill: prompt lengths; a pending condition decision; per-sample rows to decide."""
        state = self.state
        state.fold()
        state.sequence_rows = mask.shape[0]
        state.prompt_lengths = mask.long().sum(dim=1)
        if self.condition is not None:
            state.steer_samples = None
            state.condition_pending = True
        if self.per_sample:
            state.batch_ids = self._ids_in_flight(input_ids) if self.steering.needs_ids else None
            state.row_vectors = None
            state.rows_pending = True
            if self.context is None:
                self.set_rows(None, mask.shape[0])

    def _ids_in_flight(self, input_ids) -> list | None:
        """The ids of the batch ``VLM.generate_batch`` runs now, if this prefill is that batch."""
        flight = batch_in_flight(self.vlm.model)
        if flight is None or (input_ids is not None and tuple(input_ids.shape) != flight[1]):
            return None  # refused in set_rows
        samples = flight[0]
        missing = [i for i, s in enumerate(samples) if "id" not in s]
        if missing:
            raise XlvlmError(f"sample {missing[0]} of the batch has no 'id': {self.steering.what} finds each "
                             f"sample's vector by its id")
        return [str(s["id"]) for s in samples]

    def set_rows(self, states, batch: int) -> None:
        """Decide the per-sample vectors of this call: {key: (B, 1, D) or (D,)} in the model's dtype."""
        state, steering = self.state, self.steering
        ids, state.batch_ids = state.batch_ids, None  # one batch's ids serve one prefill
        if steering.needs_ids and (ids is None or len(ids) != batch):
            raise XlvlmError(f"{steering.what} needs the samples of each batch: generate with "
                             f"vlm.predict / vlm.generate / vlm.generate_batch under it")
        vectors = steering.batch_vectors(states, ids)
        check_steering_range({key: vectors[key] for key in self.keys if key in vectors}, self.alpha, self.vlm.dtype,
                             steering.what)
        checked = {}
        for key, ref in zip(self.keys, self.refs):
            vector = vectors[key]
            _check_vector(self.vlm, steering, key, vector, batch)
            vector = vector.detach().to(device=self.vlm.device, dtype=self.vlm.dtype)
            checked[ref.key] = vector if vector.dim() == 1 else vector[:, None, :]
        state.row_vectors = checked
        state.rows_pending = False

    # ---- layers ----------------------------------------------------------------------------
    def layer_hook(self, key: str):
        state, fixed = self.state, self.fixed.get(key)

        def hook(hidden):
            if self.condition is not None and state.condition_pending:
                return None  # the decision is taken at the condition layer of this prefill
            if self.per_sample and state.rows_pending:
                raise XlvlmError(f"{self.steering.what}: layer {key} ran before the context layer "
                                 f"{self.context}; use a context layer at or before the steered layer")
            vector = state.row_vectors[key] if self.per_sample else fixed
            mask = _position_mask(state, self.rule, hidden.shape[1], hidden.shape[0], hidden.device)
            state.touch(mask, hidden.shape[0])
            delta = self.operator(hidden, vector, self.alpha)
            return hidden + (delta if mask is None else delta * mask.to(hidden.dtype))

        return hook

    def condition_hook(self, hidden):
        if self.state.condition_pending:
            self.state.steer_samples = self.condition.decide(_last_real_states(self.state, hidden)).to(hidden.device)
            self.state.condition_pending = False
        return None

    def context_hook(self, hidden):
        if self.state.rows_pending:
            self.set_rows(_last_real_states(self.state, hidden), hidden.shape[0])
        return None


def steering(vlm, steering, alpha: float = 1.0, positions="all", operator="add") -> SteeringHandle:
    """Steer ``vlm`` with any kind of ``steering`` (:class:`~xlvlm.steer.protocol.Steering`) now;
    returns the handle (see :class:`SteeringHandle`). A condition comes with the steering
    (:class:`~xlvlm.steer.protocol.Gated`)."""
    return SteeringHandle(vlm, steering, alpha=alpha, positions=positions, operator=operator)
