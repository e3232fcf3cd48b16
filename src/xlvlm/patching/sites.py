"""Which states are patched: sites, resolved to hook points with :mod:`xlvlm.hooks`.

Site specs (``layers=``):

- ``3``, ``-1``, ``"final"``, a raw module name: the layer rule of :mod:`xlvlm.hooks` (layer
  ``i`` is the residual stream after decoder block ``i``, where the family's adapter reads it);
- ``"embed"``: the residual stream's input, the embeddings decoder block 0 is called with
  (image features already merged in);
- ``"attn:3"`` / ``"mlp:3"``: the output of block 3's attention / MLP (what it adds to the
  residual stream), where the block names them (``self_attn``/``attention``, ``mlp``/
  ``feed_forward``);
- ``"resid"``, ``"attn"``, ``"mlp"``: that kind at every block.

A raw module name outside the language model (e.g. a vision-tower layer) is a *vision* site:
its positions are the image's patches, and only image cells are patched there (one image per
sample).
"""

from __future__ import annotations

from dataclasses import dataclass

from xlvlm.errors import XlvlmError
from xlvlm.hooks import LayerRef, resolve_layer

PARTS = {"attn": ("self_attn", "attention", "self_attention", "attn"), "mlp": ("mlp", "feed_forward", "ffn")}


@dataclass(frozen=True)
class Site:
    """A resolved site: ``ref`` (hook point), and ``vision`` when its positions are image patches."""

    ref: LayerRef
    vision: bool = False

    @property
    def key(self) -> str:
        return self.ref.key


def _block_index(vlm, text: str, spec: str) -> int:
    n = vlm.num_layers
    try:
        index = int(text)
    except ValueError:
        raise XlvlmError(f"site {spec!r}: use attn:I or mlp:I with a block index I") from None
    if not -n <= index < n:
        raise XlvlmError(f"site {spec!r}: block {index} out of range (0..{n - 1}, negatives from the end)")
    return index % n


def _part(vlm, kind: str, index: int) -> Site:
    block = vlm.decoder_layers[index]
    for name in PARTS[kind]:
        module = getattr(block, name, None)
        if module is not None:
            return Site(LayerRef(f"{kind}:{index}", module, index))
    raise XlvlmError(f"site {kind}:{index}: {vlm.family} names no {kind} module in its blocks "
                     f"(looked for {', '.join(PARTS[kind])}); give the module's name instead")


def _expand(vlm, layers) -> list:
    if layers is None:
        return ["embed", *range(vlm.num_layers)]
    if isinstance(layers, (str, int)):
        layers = [part.strip() for part in str(layers).split(",") if part.strip()]
    out = []
    for layer in layers:
        if layer in ("resid", "attn", "mlp"):
            out.extend(range(vlm.num_layers) if layer == "resid" else (f"{layer}:{i}" for i in range(vlm.num_layers)))
        else:
            out.append(layer)
    return out


def _site(vlm, layer, decoder: set) -> Site:
    text = str(layer).strip()
    if text == "embed":
        return Site(LayerRef("embed", vlm.decoder_layers[0], -1, "input"))
    if text.split(":")[0] in PARTS and ":" in text:
        return _part(vlm, text.split(":")[0], _block_index(vlm, text.split(":", 1)[1], text))
    ref = resolve_layer(vlm, layer)
    return Site(ref, vision=ref.depth is None and ref.module not in decoder)


def resolve_sites(vlm, layers=None) -> list[Site]:
    """The sites named by ``layers`` (default: "embed" and every block's output), in the order
    given, without repeats."""
    decoder = set(vlm.model.get_decoder().modules())
    unique: dict[str, Site] = {}
    for layer in _expand(vlm, layers):
        site = _site(vlm, layer, decoder)
        unique.setdefault(site.key, site)
    if not unique:
        raise XlvlmError("no layers given: pass e.g. --layers embed,0,1 (or resid, attn, mlp)")
    return list(unique.values())
