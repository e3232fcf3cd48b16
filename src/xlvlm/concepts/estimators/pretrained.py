"""A sparse autoencoder trained elsewhere, as a concept estimator (:func:`xlvlm.concepts.load_sae`
builds it from SAELens or Gemma Scope files; ``solvers.pretrained_sae`` holds its math)."""

from __future__ import annotations

import re

import torch

from xlvlm.concepts._validate import as_features
from xlvlm.concepts.estimators.base import ConceptEstimator
from xlvlm.concepts.solvers import pretrained_sae
from xlvlm.errors import XlvlmError

# SAELens's hook names for the residual stream (TransformerLens naming): the output of block L
# is this package's layer L; the input of block L is the output of block L - 1.
_RESID_POST = re.compile(r"^blocks\.(\d+)\.hook_resid_post$")
_RESID_PRE = re.compile(r"^blocks\.(\d+)\.hook_resid_pre$")


def hook_layer(hook_name: str | None) -> str | None:
    """This package's layer key of a residual-stream hook point, or None for another site."""
    if not hook_name:
        return None
    if match := _RESID_POST.match(hook_name):
        return match.group(1)
    if (match := _RESID_PRE.match(hook_name)) and int(match.group(1)) > 0:
        return str(int(match.group(1)) - 1)
    return None


class PretrainedSAE(ConceptEstimator):
    """A pretrained SAE: ``transform`` is its encoder (pre-encoder bias, thresholds, TopK or
    gate included), ``inverse_transform`` its decoder, ``components_`` (K, D) its decoder rows.

    Not fitted here (``fit`` refuses): :func:`xlvlm.concepts.load_sae` reads one. ``features``:
    the SAE indices of the concepts when only some are kept (:meth:`select`), else None.
    """

    solver = pretrained_sae
    summary = "a sparse autoencoder trained elsewhere (SAELens, Gemma Scope); load it with load_sae"

    # params: a scikit-learn estimator's hyperparameters are its constructor's keywords (get_params reads them)
    def __init__(self, n_concepts: int = 1, architecture: str = "relu", k: int | None = None,
                 apply_b_dec_to_input: bool = True, features: list[int] | None = None, d_sae: int | None = None,
                 hook_name: str | None = None, model_name: str | None = None, seed: int = 0,
                 device: str | None = None, n_components: int | None = None, random_state=None):
        self.n_concepts, self.architecture, self.k = n_concepts, architecture, k
        self.apply_b_dec_to_input = apply_b_dec_to_input
        self.features, self.d_sae, self.hook_name, self.model_name = features, d_sae, hook_name, model_name
        self.seed, self.device = seed, device
        self.n_components, self.random_state = n_components, random_state

    def _learned(self, components: torch.Tensor, state: dict, info: dict) -> None:
        super()._learned(components, state, info)
        self.n_features_in_ = int(components.shape[1])  # given, not seen in a fit

    def fit_transform(self, X, y=None) -> torch.Tensor:
        raise XlvlmError("a pretrained SAE is loaded, not learnt: read one with xlvlm.concepts.load_sae(path), "
                         "or train one with TopKSAE")

    @property
    def layer(self) -> str | None:
        """The layer key its hook point reads (``blocks.12.hook_resid_post`` -> ``"12"``), or None."""
        return hook_layer(self.hook_name)

    def check_fits(self, hidden_size: int, num_layers: int | None, where: str) -> str | None:
        """Refuse, in one line, an SAE whose width or layer does not fit ``where`` (a model or a
        store of ``hidden_size`` features and ``num_layers`` blocks); its layer key, or None."""
        width = self._fitted().shape[1]
        if width != hidden_size:
            raise XlvlmError(f"the SAE reads {width}-wide activations ({self.hook_name or 'no hook named'}) but "
                             f"{where} has hidden size {hidden_size}; use an SAE trained on this model")
        if self.hook_name and self.layer is None:
            raise XlvlmError(f"the SAE reads {self.hook_name!r}, not the residual stream after a block "
                             f"(blocks.L.hook_resid_post); xlvlm records residual streams only")
        if self.layer is not None and num_layers is not None and int(self.layer) >= num_layers:
            raise XlvlmError(f"the SAE reads layer {self.layer} ({self.hook_name}) but {where} has "
                             f"{num_layers} layers; use an SAE of this model")
        return self.layer

    def select(self, features) -> "PretrainedSAE":
        """The same SAE keeping only ``features`` (SAE indices, in that order) as its concepts."""
        components = self._fitted()
        chosen = [int(i) for i in features]
        full = list(self.features) if self.features is not None else list(range(components.shape[0]))
        bad = [i for i in chosen if i not in full]
        if bad or not chosen:
            raise XlvlmError(f"features {bad[:5] or '[]'} are not among this SAE's; give indices below {self.d_sae}")
        rows = torch.tensor([full.index(i) for i in chosen], device=components.device)
        state = dict(self.state_)
        for name in pretrained_sae.FEATURE_STATE[self.architecture]:
            state[name] = state[name][rows]
        picked = PretrainedSAE(**{**self.get_params(), "n_concepts": len(chosen), "features": chosen})
        picked._learned(components[rows], state, dict(self.info_))
        return picked

    def top_features(self, X, n: int) -> list[int]:
        """The SAE indices of the ``n`` features most activated on rows X (N, D): ranked by how
        many rows make them their strongest feature, then by their mean activation."""
        codes = self.transform(as_features(X))
        by_mean = codes.mean(0).argsort(descending=True, stable=True)
        strongest = torch.bincount(codes.argmax(1), minlength=codes.shape[1])[by_mean]
        order = by_mean[strongest.argsort(descending=True, stable=True)][:n]
        active = [i for i in order.tolist() if float(codes[:, i].max()) > 0] or order[:1].tolist()
        full = self.features if self.features is not None else list(range(codes.shape[1]))
        return [int(full[i]) for i in active]
