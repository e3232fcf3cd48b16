"""Forward hooks that record chosen layers, with the project's layer convention.

Layer convention: an integer ``i`` is the output of decoder block ``i``
(0-based; HF ``output_hidden_states[i + 1]`` for every block but the last), negatives count
from the end, ``"final"`` is the output of the final norm, and any other string is a raw
module name (``model.get_submodule``).

Where layer ``i`` is read is the adapter's choice (``vlm.residual_site(i)``): the output of block
``i`` for most families; for Qwen3-VL, the input of block ``i + 1``, because the model adds its
deepstack visual features to the residual stream between the two blocks.

``record`` removes exactly the hooks it added, in a ``finally``. With ``stop_early`` it raises
:class:`~xlvlm.models.base.StopForward` once the deepest requested layer has run, so no later
block (and no LM head) is computed.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from torch import nn

from xlvlm.errors import XlvlmError
from xlvlm.layerkeys import find_layer, layer_key
from xlvlm.models.base import VLM, StopForward


@dataclass(frozen=True)
class LayerRef:
    """A resolved layer: ``key`` as stored ("3", "final", or a module name), the module, its
    depth (block index; ``num_layers`` for the final norm; None when unknown), and ``site``:
    "output" (the module's output) or "input" (the hidden states the module is called with)."""

    key: str
    module: nn.Module
    depth: int | None
    site: str = "output"


def require_vlm(vlm, what: str = "this call") -> None:
    """A one-line error when ``vlm`` is not a loaded xlvlm VLM (e.g. a bare transformers model,
    whose layers, processor and template xlvlm would otherwise have to guess)."""
    if not isinstance(vlm, VLM):
        raise XlvlmError(f"{what} needs a VLM from xlvlm.load_vlm(name_or_path) (or xlvlm.organism.load(...)), "
                         f"not a {type(vlm).__name__}; load the model with xlvlm.load_vlm")


def resolve_layer(vlm, layer) -> LayerRef:
    require_vlm(vlm, "a layer of the model (recording, steering)")
    n = vlm.num_layers
    text = layer_key(layer)
    if text == "final":
        return LayerRef("final", vlm.final_norm, n)
    try:
        index = int(text)
    except ValueError:
        try:
            return LayerRef(text, vlm.model.get_submodule(text), None)
        except AttributeError:
            raise XlvlmError(f"unknown layer {text!r}: use a block index (0..{n - 1}, negatives from the end), "
                             f"'final', or a module name of the model")
    if not -n <= index < n:
        raise XlvlmError(f"layer {index} out of range: the model has {n} decoder layers (0..{n - 1}, -{n}..-1, or 'final')")
    index %= n
    module, site = vlm.residual_site(index)
    return LayerRef(str(index), module, index, site)


def resolve_layers(vlm, layers: Iterable) -> list[LayerRef]:
    """Resolve and de-duplicate layers, keeping the order given."""
    if isinstance(layers, (str, int)):
        layers = [part for part in str(layers).split(",") if part.strip()]
    refs, seen = [], set()
    for layer in layers:
        ref = resolve_layer(vlm, layer)
        if ref.key not in seen:
            seen.add(ref.key)
            refs.append(ref)
    if not refs:
        raise XlvlmError("no layers given: pass e.g. --layers 3,final")
    return refs


def hidden_of(output) -> torch.Tensor:
    """A block's hidden states, whether it returns a Tensor (transformers 5.x) or a tuple."""
    return output[0] if isinstance(output, (tuple, list)) else output


def attach(ref: LayerRef, edit: Callable[[torch.Tensor], torch.Tensor | None], first: bool = False):
    """Call ``edit(hidden (B, t, D))`` at the layer's site on every forward; a returned tensor
    replaces the hidden states there. Returns the hook handle (the caller removes it).

    first: run before the module's other hooks, so that they see the edit too: transformers
    collects ``output_hidden_states`` with hooks of its own (a vision tower's selected layer
    reaches the projector that way), which would otherwise keep the unedited states."""
    if ref.site == "input":
        def pre_hook(module, args, kwargs):
            if args:
                new = edit(args[0])
                return None if new is None else ((new, *args[1:]), kwargs)
            new = edit(kwargs["hidden_states"])
            return None if new is None else (args, {**kwargs, "hidden_states": new})
        return ref.module.register_forward_pre_hook(pre_hook, with_kwargs=True, prepend=first)

    def hook(module, args, output):
        new = edit(hidden_of(output))
        if new is None:
            return None
        return (new, *output[1:]) if isinstance(output, (tuple, list)) else new
    return ref.module.register_forward_hook(hook, prepend=first)


@dataclass
class Recording:
    """What ``record`` captured: for each layer key, one tensor per forward call (B, t, D).
    ``num_layers`` lets a negative index find its block."""

    outputs: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    num_layers: int | None = None

    def stacked(self, layer) -> torch.Tensor:
        """All calls of a layer (3, "3", -1, "final", as recorded) concatenated on the token
        axis: (B, sum t, D)."""
        key = find_layer(layer, self.outputs, self.num_layers)
        if key is None:
            raise XlvlmError(f"layer {layer_key(layer)!r} was not recorded (recorded: {', '.join(self.outputs)}); "
                             f"add it to record(vlm, layers)")
        return torch.cat(self.outputs[key], dim=1)


@contextmanager
def record(vlm, layers, stop_early: bool = False,
           keep: Callable[[str, torch.Tensor], torch.Tensor] | None = None):
    """Record the outputs of ``layers`` during forward passes or generation.

    keep: optional ``(key, hidden (B, t, D)) -> tensor`` applied in the hook, so only what is
    needed stays in memory. stop_early: end the forward pass after the deepest layer (only
    for teacher forcing; ``VLM.forward`` catches the stop).
    Yields a :class:`Recording`.
    """
    refs = resolve_layers(vlm, layers)
    recording = Recording({ref.key: [] for ref in refs}, vlm.num_layers)
    depths = [ref.depth for ref in refs]
    stop_key = None
    if stop_early and None not in depths:
        stop_key = max(refs, key=lambda ref: ref.depth).key

    def make_hook(key: str):
        def hook(hidden):
            hidden = hidden.detach()
            recording.outputs[key].append(keep(key, hidden) if keep else hidden)
            if key == stop_key:
                raise StopForward
        return hook

    handles = []
    try:
        for ref in refs:
            handles.append(attach(ref, make_hook(ref.key)))
        yield recording
    finally:
        for handle in handles:
            handle.remove()
