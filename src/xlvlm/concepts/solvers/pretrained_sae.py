"""The encoders and decoder of sparse autoencoders trained elsewhere (SAELens's architectures).

Notation: Z (N, D) features, W (K, D) encoder rows (SAELens's ``W_enc`` (D, K) transposed),
c (K,) encoder bias, b (D,) decoder bias, V (K, D) decoder rows = components, theta (K,)
JumpReLU thresholds, U (N, K) codes.

    X   = Z - b if apply_b_dec_to_input else Z        (the pre-encoder bias)
    pre = X W^T + c
    relu:      U = ReLU(pre)
    jumprelu:  U = ReLU(pre) * [pre > theta]
    topk:      U = TopK_k(ReLU(pre))                  (keep the k largest per row, zero the rest)
    gated:     U = [X W^T + c_gate > 0] * ReLU(X (W * exp(r_mag))^T + c_mag)
    Z_hat = U V + b

A dictionary may hold a selection of the SAE's features (``options["features"]``, their SAE
indices). Every architecture but TopK codes each feature on its own, so its encoder rows are
sliced with the components; TopK ranks all features, so it keeps every encoder row and the
selection is taken from its full codes.
"""

from __future__ import annotations

import torch

ARCHITECTURES = ("relu", "topk", "jumprelu", "gated")

#: state tensors indexed by feature (sliced when features are selected), per architecture
FEATURE_STATE = {
    "relu": ("encoder", "encoder_bias"),
    "jumprelu": ("encoder", "encoder_bias", "threshold"),
    "gated": ("encoder", "gate_bias", "magnitude_bias", "magnitude_log_scale"),
    "topk": (),
}


def _pre_input(Z: torch.Tensor, state: dict, options: dict) -> torch.Tensor:
    return Z - state["decoder_bias"] if options["apply_b_dec_to_input"] else Z


def _topk(pre: torch.Tensor, k: int) -> torch.Tensor:
    """TopK_k(ReLU(pre)) per row: the k largest kept (negatives as 0), the rest zeroed."""
    top = pre.topk(min(k, pre.shape[1]), dim=1)
    return torch.zeros_like(pre).scatter(1, top.indices, top.values.relu())


@torch.no_grad()
def encode(Z: torch.Tensor, components: torch.Tensor, state: dict, options: dict) -> torch.Tensor:
    """Z (N, D) -> codes (N, K) of the dictionary's features."""
    X = _pre_input(Z, state, options)
    architecture = options["architecture"]
    W = state["encoder"]
    if architecture == "gated":
        gate = (X @ W.T + state["gate_bias"]) > 0
        magnitude = torch.relu(X @ (W * state["magnitude_log_scale"].exp()[:, None]).T + state["magnitude_bias"])
        return magnitude * gate.to(magnitude.dtype)
    pre = X @ W.T + state["encoder_bias"]
    if architecture == "jumprelu":
        return torch.relu(pre) * (pre > state["threshold"]).to(pre.dtype)
    if architecture == "relu":
        return torch.relu(pre)
    # topk: every feature takes part in the ranking, then the selected ones are kept
    codes = _topk(pre, int(options["k"]))
    features = options.get("features")  # SAE indices, as the encoder rows here are all the SAE's
    return codes if features is None else codes[:, features]


@torch.no_grad()
def decode(U: torch.Tensor, components: torch.Tensor, state: dict, options: dict) -> torch.Tensor:
    """U (N, K) -> U V + b (N, D): the reconstruction from the dictionary's features."""
    return U @ components + state["decoder_bias"]
