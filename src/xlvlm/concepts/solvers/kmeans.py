"""k-means concepts (CoX-LMM's clustering baseline), seeded k-means++ and Lloyd in torch.

Notation (``xlvlm.concepts``): Z (N, D) features, C = V (K, D) the centroids (the
components), U (N, K) activations.

    minimise  sum_n min_k ||Z_n - C_k||^2     (Lloyd: assign to nearest, move to the mean)
    U[n, k] = 1 / (1 + ||Z_n - C_k||)          (soft activation, as CoX-LMM)

The decoder maps a code to the centroid of its most active concept (the nearest centroid).
"""

from __future__ import annotations

import math

import torch


def squared_distances(Z: torch.Tensor, C: torch.Tensor, Z_sq: torch.Tensor | None = None) -> torch.Tensor:
    """||Z_n - C_k||^2 for Z (N, D), C (K, D) -> (N, K), clamped at 0 against round-off.

    Z_sq: the precomputed ||Z_n||^2 (N,); callers looping over centroids pass it, because
    on a large Z that memory-bound pass costs more than the (N, K) matmul.
    """
    if Z_sq is None:
        Z_sq = row_sq_norms(Z)
    return (Z_sq.unsqueeze(1) - 2.0 * (Z @ C.T) + row_sq_norms(C)).clamp_min(0)


def row_sq_norms(Z: torch.Tensor) -> torch.Tensor:
    """||Z_n||^2 (N,) for Z (N, D), without an (N, D) temporary."""
    return torch.linalg.vector_norm(Z, dim=1).square()


def kmeans_plus_plus(Z: torch.Tensor, k: int, generator: torch.Generator, Z_sq: torch.Tensor) -> torch.Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007): Z (N, D) -> centroids (k, D).

    The first centre is a uniform draw; for each next one, 2 + ln(k) candidates are drawn
    with probability proportional to the squared distance to the nearest chosen centre and
    the one that lowers the total most is kept (plain k-means++ with one candidate merged
    two planted clusters in about one run in three).
    """
    n = Z.shape[0]
    n_trials = 2 + int(math.log(k))
    first = torch.randint(n, (1,), generator=generator, device=Z.device)
    chosen = [first]
    closest = squared_distances(Z, Z[first], Z_sq).squeeze(1)
    for _ in range(1, k):
        total = closest.sum()
        # Fewer distinct points than k: any point will do.
        weights = closest / total if total > 0 else torch.ones_like(closest)
        candidates = torch.multinomial(weights, n_trials, replacement=True, generator=generator)
        trial = torch.minimum(closest.unsqueeze(1), squared_distances(Z, Z[candidates], Z_sq))  # (N, trials)
        best = int(trial.sum(0).argmin())
        chosen.append(candidates[best : best + 1])
        closest = trial[:, best]
    return Z[torch.cat(chosen)].clone()


def lloyd(
    Z: torch.Tensor, n_clusters: int, generator: torch.Generator, max_iter: int = 100, n_init: int = 1
) -> tuple[torch.Tensor, torch.Tensor, float, int]:
    """k-means on Z (N, D): returns centroids (K, D), labels (N,), inertia, iterations run.

    Runs ``n_init`` seeded k-means++ starts and keeps the lowest inertia. An emptied cluster is
    moved onto the point farthest from its centroid, so K clusters always survive.
    """
    Z_sq = row_sq_norms(Z)
    best = None
    for _ in range(n_init):
        C = kmeans_plus_plus(Z, n_clusters, generator, Z_sq)
        labels = None
        for iteration in range(1, max_iter + 1):
            closest, new_labels = squared_distances(Z, C, Z_sq).min(1)
            if labels is not None and torch.equal(new_labels, labels):
                break
            labels = new_labels
            # Cluster sums as a matmul with the one-hot assignment: faster than index_add_ on CPU.
            members = torch.nn.functional.one_hot(labels, n_clusters).to(Z.dtype)
            counts = members.sum(0)
            C = (members.T @ Z) / counts.clamp_min(1).unsqueeze(1)
            for empty in torch.nonzero(counts == 0).flatten().tolist():
                far = int(closest.argmax())
                C[empty] = Z[far]
                closest[far] = -1.0
        closest, labels = squared_distances(Z, C, Z_sq).min(1)
        inertia = float(closest.double().sum())
        if best is None or inertia < best[2]:
            best = (C, labels, inertia, iteration)
    return best


def initial_centroids(
    Z: torch.Tensor, k: int, generator: torch.Generator, max_iter: int, max_rows: int, n_init: int
) -> torch.Tensor:
    """k-means centroids (k, D) of Z (N, D), or of ``max_rows`` rows drawn without replacement;
    the best (lowest inertia) of ``n_init`` seeded runs.

    Only a starting point for the factorisation methods, but a bad one sticks: with K = 20
    planted clusters, one k-means run in four to eight merged two clusters and split another,
    and semi-NMF started there kept the mistake. Several runs on a few thousand rows cost
    about as much as one run on all rows of a 5000 x 4096 matrix.
    """
    if Z.shape[0] > max(max_rows, k):
        rows = torch.randperm(Z.shape[0], generator=generator, device=Z.device)[: max(max_rows, k)]
        Z = Z[rows.sort().values]
    return lloyd(Z, k, generator, max_iter=max_iter, n_init=n_init)[0]


def fit(
    Z: torch.Tensor, n_concepts: int, generator: torch.Generator, max_iter: int, n_init: int
) -> tuple[torch.Tensor, torch.Tensor, dict, dict]:
    """Z (N, D) -> (centroids (K, D), activations 1 / (1 + distance) (N, K), state, info)."""
    C, labels, inertia, n_iter = lloyd(Z, n_concepts, generator, max_iter=max_iter, n_init=n_init)
    return C, encode(Z, C, {}, {}), {}, {"n_iter": n_iter, "inertia": inertia}


# ---- mini-batch k-means (Sculley 2010, "Web-scale k-means clustering") -------------------------
# Each minibatch Z_b (B, D) assigns its rows to the nearest centroid; centroid c, given n_c rows
# of this minibatch and count_c rows so far (this one included), moves to
#     C_c <- C_c + (sum_{rows of c} Z_b - n_c C_c) / count_c
# a per-centroid learning rate 1/count_c, so a centroid is the running mean of the rows it was
# given. After each pass (epoch) a centroid that got no row moves onto the farthest row of the
# pass's last minibatch. These steps refine a start but cannot undo two clusters merged by it,
# so the start is the best of several k-means++/Lloyd runs on a sample of rows.


def minibatch_step(Z: torch.Tensor, C: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One step on minibatch Z (B, D): centroids C (K, D), counts (K,) float64 (updated in
    place) -> (new C (K, D), rows given to each centroid (K,) float64)."""
    k = C.shape[0]
    # nearest centroid: ||Z_n||^2 is the same for every k, so argmin ||C_k||^2 - 2 <Z_n, C_k> suffices
    labels = (row_sq_norms(C) - 2.0 * (Z @ C.T)).argmin(1)
    given = torch.bincount(labels, minlength=k).double()
    counts += given
    # per-cluster sums by index_add_: O(B D), where a one-hot matmul is O(B K D)
    sums = torch.zeros_like(C).index_add_(0, labels, Z)
    step = sums.double() - given.unsqueeze(1) * C.double()
    return (C.double() + step / counts.clamp_min(1).unsqueeze(1)).float(), given


def revive_dead(C: torch.Tensor, counts: torch.Tensor, given: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """Move each centroid of C (K, D) given no row in a pass (given (K,) == 0) onto the row of
    ``last`` (B, D) farthest from its centroid; its count restarts at 0. In place; returns C."""
    for dead in torch.nonzero(given == 0).flatten().tolist():
        far = int(squared_distances(last, C).min(1).values.argmax())
        C[dead] = last[far]
        counts[dead] = 0
    return C


def encode(Z: torch.Tensor, components: torch.Tensor, state: dict, options: dict) -> torch.Tensor:
    """Z (N, D) -> 1 / (1 + ||Z_n - C_k||) (N, K), in (0, 1]."""
    return 1.0 / (1.0 + squared_distances(Z, components).sqrt())


def decode(U: torch.Tensor, components: torch.Tensor, state: dict, options: dict) -> torch.Tensor:
    """U (N, K) -> the centroid of each row's most active concept (N, D)."""
    return components[U.argmax(1)]

