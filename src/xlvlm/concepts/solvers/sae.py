"""TopK sparse autoencoder concepts (Makhzani & Frey 2013; Gao et al. 2024), beyond the paper.

Notation (``xlvlm.concepts``): Z (N, D) features, s a scalar scale, b (D,) decoder bias,
W (K, D) encoder, c (K,) encoder bias, V (K, D) decoder rows = components (unit norm),
U (N, K) activations.

    X = Z / s                                   (s = RMS row norm / sqrt(D): entries O(1),
                                                 so one learning rate suits every layer)
    U = TopK_k( ReLU((X - b) W^T + c) )         (keep the k largest per row, zero the rest)
    Z_hat = s (U V + b)
    minimise mean_n ||X_n - (U_n V + b)||^2 with Adam over (W, c, V, b)

V's rows are renormalised to unit norm after every step, so a concept's strength lives in its
activation, and TopK compares like with like. Start: V random unit rows, W = V, b = mean of X,
c = 0. Minibatches are drawn from a seeded generator. (No auxiliary loss for dead latents:
``dead_concepts`` reports them.)
"""

from __future__ import annotations

import torch


def _codes(X: torch.Tensor, W: torch.Tensor, c: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    """Scaled features X (N, D) -> TopK codes (N, K)."""
    pre = torch.relu((X - b) @ W.T + c)
    top = pre.topk(k, dim=1)
    return torch.zeros_like(pre).scatter(1, top.indices, top.values)


def start(Z: torch.Tensor, n_concepts: int, generator: torch.Generator, lr: float) -> dict:
    """A fresh SAE for rows like Z (N, D): the scale s and the mean of Z / s from Z, V random
    unit rows, W = V, c = 0 -> {"params": {W, c, V, b} (trainable), "optimiser": Adam, "scale"}."""
    d = Z.shape[1]
    scale = (Z.square().sum(1).mean() / d).sqrt().clamp_min(1e-12)
    V = torch.randn(n_concepts, d, generator=generator, device=Z.device, dtype=Z.dtype)
    V = torch.nn.functional.normalize(V, dim=1)
    params = {
        "W": V.clone().requires_grad_(True),
        "c": torch.zeros(n_concepts, device=Z.device, dtype=Z.dtype, requires_grad=True),
        "V": V.requires_grad_(True),
        "b": (Z / scale).mean(0).clone().requires_grad_(True),
    }
    return {"params": params, "optimiser": torch.optim.Adam(params.values(), lr=lr), "scale": scale}


def resume(V: torch.Tensor, W: torch.Tensor, c: torch.Tensor, b: torch.Tensor, scale: torch.Tensor, lr: float) -> dict:
    """A trained SAE (decoder rows V (K, D), encoder W (K, D), c (K,), b (D,), scale s) to train
    further, as ``start`` returns it (a new Adam state)."""
    params = {name: t.detach().clone().requires_grad_(True) for name, t in (("W", W), ("c", c), ("V", V), ("b", b))}
    return {"params": params, "optimiser": torch.optim.Adam(params.values(), lr=lr), "scale": scale}


def train_step(sae: dict, Z: torch.Tensor, k: int) -> None:
    """One Adam step of ``sae`` (from ``start``) on the rows Z (B, D), keeping k codes per row;
    V's rows are renormalised after it."""
    params, x = sae["params"], Z / sae["scale"]
    # Callers may run under no_grad (the estimators do).
    with torch.enable_grad():
        U = _codes(x, params["W"], params["c"], params["b"], k)
        loss = (x - (U @ params["V"] + params["b"])).square().sum(1).mean()
        sae["optimiser"].zero_grad(set_to_none=True)
        loss.backward()
    sae["optimiser"].step()
    with torch.no_grad():
        params["V"].div_(params["V"].norm(dim=1, keepdim=True).clamp_min(1e-12))


def learned(sae: dict) -> tuple[torch.Tensor, dict]:
    """The components V (K, D) and the state encode/decode need, as views of the trained tensors."""
    params = {name: p.detach() for name, p in sae["params"].items()}
    return params["V"], {"encoder": params["W"], "encoder_bias": params["c"], "decoder_bias": params["b"],
                         "scale": sae["scale"]}


def fit(
    Z: torch.Tensor, n_concepts: int, generator: torch.Generator, k_active: int | None, steps: int,
    batch_size: int, lr: float,
) -> tuple[torch.Tensor, torch.Tensor, dict, dict]:
    """Train a TopK SAE on Z (N, D): ``steps`` minibatches of ``batch_size`` rows drawn with
    replacement -> (decoder rows V (K, D), codes (N, K), state, info)."""
    n = Z.shape[0]
    k = active_count(k_active, n_concepts)
    sae = start(Z, n_concepts, generator, lr)
    batch = min(batch_size, n)
    for _ in range(steps):
        train_step(sae, Z[torch.randint(n, (batch,), generator=generator, device=Z.device)], k)
    V, state = learned(sae)
    V, state = V.clone(), {name: t.clone() for name, t in state.items()}
    options = {"k_active": k_active}
    U = encode(Z, V, state, options)
    with torch.no_grad():
        error = float((Z - decode(U, V, state, options)).square().sum() / Z.square().sum().clamp_min(1e-30))
    return V, U, state, {"k_active": k, "relative_squared_error": error}


def active_count(k_active: int | None, n_concepts: int) -> int:
    """The number of concepts kept per sample: ``k_active``, default max(1, K // 4)."""
    return min(n_concepts, k_active if k_active else max(1, n_concepts // 4))


@torch.no_grad()
def encode(Z: torch.Tensor, components: torch.Tensor, state: dict, options: dict) -> torch.Tensor:
    """Z (N, D) -> TopK codes (N, K), in units of the scaled features."""
    k = active_count(options["k_active"], components.shape[0])
    return _codes(Z / state["scale"], state["encoder"], state["encoder_bias"], state["decoder_bias"], k)


@torch.no_grad()
def decode(U: torch.Tensor, components: torch.Tensor, state: dict, options: dict) -> torch.Tensor:
    """U (N, K) -> s (U V + b) (N, D)."""
    return (U @ components + state["decoder_bias"]) * state["scale"]

