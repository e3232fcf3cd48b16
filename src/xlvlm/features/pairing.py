"""Pairing the rows of two stores by sample id: what shift analysis and the paired steering
methods compare (the same samples under two models, or two conditions)."""

from __future__ import annotations

import torch

from xlvlm.errors import XlvlmError


def _present_rows(store, layer, user: str) -> dict[str, torch.Tensor]:
    """{id: (D,) row} of the store's present samples, in store order."""
    if store.settings.rows_per_sample != 1:
        raise XlvlmError(f"store {store.path} has several rows per sample; {user} needs one (extract with a "
                         f"single-token selector such as last-prompt or token:WORD)")
    features = store.features(layer)
    return {sid: features[i] for i, (sid, ok) in enumerate(zip(store.ids, store.present.tolist())) if ok}


def paired_rows(first, second, layer, user: str, otherwise: str = "",
                second_layer=None) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The ``layer`` rows of the samples present in both stores, paired by id, in ``first``'s order.

    ``first``, ``second``: stores with one row per sample. Returns (M, D) and (M, D) float32 and
    the M ids. ``user`` names what needs the pairs in the one-line errors ("shift analysis");
    ``otherwise`` ends the error for stores without a common sample (what else to do).
    ``second_layer``: read ``second`` at another layer (learned steering pairs a sample's context
    state with its vector at the steered layer).
    """
    a = _present_rows(first, layer, user)
    b = _present_rows(second, layer if second_layer is None else second_layer, user)
    ids = [sid for sid in a if sid in b]
    if not ids:
        raise XlvlmError(f"stores {first.path} and {second.path} share no sample present in both; {user} needs "
                         f"the same samples in both (extract both on the same samples{otherwise})")
    if a[ids[0]].shape != b[ids[0]].shape:
        raise XlvlmError(f"hidden sizes differ: {first.path} has {a[ids[0]].shape[0]}, {second.path} has "
                         f"{b[ids[0]].shape[0]}; {user} pairs rows of the same layer of one model (or of its "
                         f"fine-tuned version)")
    return torch.stack([a[i] for i in ids]).float(), torch.stack([b[i] for i in ids]).float(), ids
