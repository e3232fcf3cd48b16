"""Planted concept structure for tests and benchmarks: Z = U V + noise with known U and V.

Notation (``xlvlm.concepts``): U (N, K) >= 0 codes, V (K, D) components, Z (N, D) = U V + E.

Cluster-like codes, as hidden states of a model that answers a few kinds of question: every
sample holds one main concept (weight uniform in [1, 2]) and a fraction of them also a weaker
second one (weight uniform in [0.1, 0.5]). Components are Gaussian with unit-norm rows
scaled by sqrt(D), so entries of Z are O(1) whatever D; the noise E is i.i.d. Gaussian with
standard deviation ``noise``.
"""

from __future__ import annotations

import torch


def planted_matrix(
    n: int, d: int, k: int, seed: int = 0, noise: float = 0.1, second: float = 0.3, nonnegative: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (Z (n, d), U (n, k), V (k, d)), float32 on CPU, reproducible from ``seed``.

    nonnegative: take |V| and |E| so that Z >= 0 (for plain NMF).
    """
    g = torch.Generator().manual_seed(seed)
    V = torch.randn(k, d, generator=g)
    if nonnegative:
        V = V.abs()
    V = V / V.norm(dim=1, keepdim=True) * d**0.5
    U = torch.zeros(n, k)
    main = torch.arange(n) % k  # balanced: every concept is some samples' main one
    main = main[torch.randperm(n, generator=g)]
    U[torch.arange(n), main] = 1.0 + torch.rand(n, generator=g)
    has_second = torch.rand(n, generator=g) < second
    offset = torch.randint(1, k, (n,), generator=g) if k > 1 else torch.zeros(n, dtype=torch.long)
    other = (main + offset) % k
    rows = torch.nonzero(has_second).flatten()
    U[rows, other[rows]] = 0.1 + 0.4 * torch.rand(len(rows), generator=g)
    E = noise * torch.randn(n, d, generator=g)
    if nonnegative:
        E = E.abs()
    return U @ V + E, U, V
