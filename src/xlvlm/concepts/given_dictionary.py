"""A dictionary given instead of learnt: a saved xlvlm dictionary or a pretrained SAE, opened,
checked against the store and model, and (for an SAE) cut down to the features worth grounding.

A 16k-wide SAE has far more features than anyone reads: only ``n`` are grounded, the ones the
store's rows activate most (see :meth:`PretrainedSAE.top_features`), or those asked for.
"""

from __future__ import annotations

from pathlib import Path

import torch

from xlvlm.concepts.dictionary import META_FILE, ConceptDictionary
from xlvlm.concepts.estimators.pretrained import PretrainedSAE
from xlvlm.errors import XlvlmError

#: the most SAE features grounded when none are named (each costs a word and an image grounding)
MAX_FEATURES = 256


def open_dictionary(source) -> ConceptDictionary | PretrainedSAE:
    """``source``: a ConceptDictionary or PretrainedSAE (returned as is), an xlvlm dictionary
    folder, or an SAE's files (:func:`xlvlm.concepts.load_sae`)."""
    if isinstance(source, (ConceptDictionary, PretrainedSAE)):
        return source
    from xlvlm.concepts.sae_files import load_sae

    path = Path(source)
    if (path if path.is_dir() else path.parent).joinpath(META_FILE).is_file():
        return ConceptDictionary.load(path)
    return load_sae(path)


def open_for_store(source, layer, store, vlm) -> tuple[ConceptDictionary | PretrainedSAE, object]:
    """The opened ``source`` (:func:`open_dictionary`) and the layer to read (:func:`dictionary_layer`)."""
    given = open_dictionary(source)
    return given, dictionary_layer(given, layer, store, vlm)


def dictionary_layer(given, layer, store, vlm) -> object:
    """The layer to read: ``layer`` if given, else the SAE's; an SAE whose width or layer does
    not fit the store (or the model) is refused in one line, as is a layer that contradicts it."""
    if not isinstance(given, PretrainedSAE):
        if layer is None:
            raise XlvlmError("--layer is required: a saved dictionary does not say which layer it was learnt on")
        return layer
    num_layers = getattr(vlm, "num_layers", None) or store.settings.num_layers
    own = given.check_fits(store.hidden_size, num_layers, f"store {store.path}")
    if own is None and layer is None:
        raise XlvlmError(f"the SAE does not say which layer it reads ({given.hook_name or 'no hook name'}); "
                         "give --layer")
    if own is not None and layer is not None and store.layer_key(layer) != store.layer_key(own):
        raise XlvlmError(f"--layer {layer} differs from the layer the SAE reads ({given.hook_name}); "
                         f"leave --layer out or give {own}")
    return own if layer is None else layer


def dictionary_for(given, X: torch.Tensor, n: int, features=None) -> tuple[ConceptDictionary, dict]:
    """The ConceptDictionary to ground (its activations: the codes of X (N, D)) and the metrics
    of the whole SAE (empty for a saved dictionary). An SAE keeps ``features`` (its indices)
    or its ``n`` most activated features, at most MAX_FEATURES."""
    from xlvlm.concepts.metrics import dead_concepts, reconstruction_r2

    if isinstance(given, ConceptDictionary):
        if X.shape[1] != given.n_features:
            raise XlvlmError(f"the dictionary has {given.n_features} features but the store's rows have {X.shape[1]}; "
                             "use the layer and model it was learnt on")
        return ConceptDictionary(given.components, given.transform(X), given.method, given.params, given.state,
                                 given.info), {}
    codes = given.transform(X)
    whole = {"sae_width": codes.shape[1],
             "sae_reconstruction_r2": float(reconstruction_r2(X, given.to_dictionary(codes), codes)),
             "sae_mean_active_features": float((codes > 0).sum(1).double().mean()),
             "sae_dead_features": dead_concepts(codes, by="active")}
    chosen = given.select(features if features is not None else given.top_features(X, min(n, MAX_FEATURES)))
    return chosen.to_dictionary(chosen.transform(X)), whole
