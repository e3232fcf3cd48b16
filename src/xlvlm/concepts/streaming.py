"""Concepts from a feature store larger than memory: semi-NMF and k-means over minibatches
read one shard at a time (``FeatureStore.iter_rows``).

Notation as in ``xlvlm.concepts``::

    Z    (N, D)  the store's rows at one layer, never in memory at once
    Z_b  (B, D)  one minibatch of rows (B = batch_rows; shards are read through slices)
    U    (N, K)  codes / activations (U_b (B, K) for a minibatch)
    V    (K, D)  components (semi-NMF) or centroids (k-means)

Memory: one minibatch and the pages of one open shard, O(K D) statistics, and the (N, K)
activations returned (K/D of the store's size); never Z. Passes over the store:

1. **Sample pass**: ``init_rows`` rows drawn uniformly without replacement (each row gets a
   random key; the rows with the smallest keys are kept), and s^2 = mean_n ||Z_n||^2.
   ``initial_centroids`` on the sample gives the start, as the in-memory methods do on
   their own sample of rows.
2. **Fitting passes** (below).
3. **Codes pass**: the activations for the final V, exactly as ``ConceptDictionary.transform``
   computes them (the returned dictionary is an ordinary ``snmf`` / ``kmeans`` one).

semi-NMF (``method="snmf"``; same objective as ``xlvlm.concepts.snmf``,
0.5 ||Z - U V||^2 + lambda sum(U), U >= 0, lambda = l1 * s): every fitting pass is one
outer iteration of the in-memory algorithm, with the least-squares V step taken over all
rows through its sufficient statistics::

    for each minibatch:  U_b = the codes of Z_b for the current V            (see below)
                         G += U_b^T U_b  (K, K),   H += U_b^T Z_b  (K, D)    (float64)
    V <- G^{-1} H  (= argmin_V ||Z - U V||^2 over all rows), rows rescaled to unit norm

The codes U_b are the exact non-negative (L1-penalised) least-squares codes of Z_b for the
current V, by coordinate descent (``nnls.nonneg_codes``, started from the clamped
least-squares codes, at most ``codes_iter`` sweeps): the in-memory method carries U over
between iterations and takes ``inner`` multiplicative steps from there, but no U is kept
here, and a few multiplicative steps from a cold start are not enough (on a planted test with
l1 = 0.05, 10 steps made the objective rise at the second pass and the fit ended 1.4% worse
than in memory). With exact codes every pass is an exact block-coordinate step. The
objective of the pass, 0.5 (sum ||Z_b||^2 - 2 <H, V> + <G, V V^T>) + lambda sum U, comes from
the same statistics; fitting stops when it decreases by less than ``tol`` (relative) or after
``max_passes``. Each pass reads the whole store, hence looser defaults than in memory
(tol 1e-3, 10 passes): on planted data 5 passes came within 0.5% of the in-memory
reconstruction error and 10 passes matched it.

k-means (``method="kmeans"``): minibatch k-means (Sculley 2010, "Web-scale k-means
clustering"). Each minibatch assigns its rows to the nearest centroid; centroid c, given
n_c rows of this minibatch and count_c rows so far (this one included), moves to::

    C_c <- C_c + (sum_{rows of c} Z_b - n_c C_c) / count_c

a per-centroid learning rate 1/count_c, so a centroid is the running mean of the rows it
was given. ``epochs`` passes, each reading the shards in a new random order; a centroid that
got no row in a pass is moved onto the farthest row of the pass's last minibatch. These steps
refine the start but cannot undo two clusters merged by it, so the start is the best of
``n_init`` = 10 k-means++/Lloyd runs on the sample (cheap: the sample is small), not 3 as in
memory: on planted data (K = 50, 16k rows) 3 starts merged clusters for 1 seed in 6 (the
in-memory method, for 2 in 6), 10 starts for none.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tqdm.auto import tqdm

from xlvlm.concepts import kmeans as kmeans_module
from xlvlm.concepts import snmf as snmf_module
from xlvlm.concepts.dictionary import ConceptDictionary
from xlvlm.concepts.kmeans import initial_centroids, squared_distances
from xlvlm.concepts.nnls import nonneg_codes
from xlvlm.errors import XlvlmError

DEFAULTS = {
    "snmf": {"l1": 0.0, "max_passes": 10, "tol": 1e-3, "codes_iter": 100, "kmeans_iter": 50, "init_rows": 4096,
             "init_runs": 3},
    "kmeans": {"epochs": 3, "max_iter": 100, "n_init": 10, "init_rows": 4096},
}


def learn_concepts_streaming(store, layer, method: str = "snmf", n_concepts: int = 20, batch_rows: int = 4096,
                             seed: int = 0, device=None, present_only: bool = True, progress: bool = False,
                             **options) -> ConceptDictionary:
    """Learn K concepts from a FeatureStore's rows at ``layer`` without loading them all.

    store: a FeatureStore or its folder. method: ``snmf`` or ``kmeans``; options are that
    method's (``DEFAULTS[method]``). batch_rows: rows per minibatch (memory ~ batch_rows x D
    floats). present_only: leave out the rows of samples without a match (NaN rows).
    device: where the minibatches are processed (default CPU). Returns a ConceptDictionary:
    components (K, D), activations (N, K) in store order, usable like ``learn_concepts``'s.
    """
    from xlvlm.extract.store import FeatureStore

    if method not in DEFAULTS:
        raise XlvlmError(f"method {method!r} cannot stream; use one of: {', '.join(DEFAULTS)} "
                         f"(or load the features and call learn_concepts)")
    unknown = sorted(set(options) - set(DEFAULTS[method]))
    if unknown:
        raise XlvlmError(f"unknown option(s) {', '.join(unknown)} for streaming {method!r}; its options are: "
                         f"{', '.join(DEFAULTS[method])}")
    if isinstance(n_concepts, bool) or not isinstance(n_concepts, int) or n_concepts < 1:
        raise XlvlmError(f"n_concepts must be a positive integer, got {n_concepts!r}")
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
        raise XlvlmError(f"batch_rows must be a positive integer, got {batch_rows!r}")
    resolved = {**DEFAULTS[method], **options}
    if not isinstance(resolved["init_rows"], int) or resolved["init_rows"] < n_concepts:
        raise XlvlmError(f"init_rows={resolved['init_rows']!r} must be an integer >= n_concepts={n_concepts}")
    params = {"n_concepts": n_concepts, "seed": int(seed), **resolved, "streaming": True, "batch_rows": batch_rows}
    try:
        json.dumps(params, allow_nan=False)
    except (TypeError, ValueError):
        raise XlvlmError(f"options for {method!r} must be plain numbers, got {options!r}") from None
    if isinstance(store, (str, Path)):  # a folder; stores (also in-memory ones) are used as given
        store = FeatureStore(Path(store))
    stream = _Stream(store, store.layer_key(layer), batch_rows, present_only, device, progress)
    generator = torch.Generator().manual_seed(int(seed))  # sample keys and shard orders, on the CPU
    start_generator = (generator if stream.device.type == "cpu"  # k-means++ draws on the working device
                       else torch.Generator(device=stream.device).manual_seed(int(seed)))
    with torch.no_grad():
        sample, n_rows, sq_norm = stream.sample(resolved["init_rows"], n_concepts, generator)
        if method == "snmf":
            start = initial_centroids(sample, n_concepts, start_generator, resolved["kmeans_iter"],
                                      resolved["init_rows"], resolved["init_runs"])
            del sample
            V, state, info = _fit_snmf(stream, start, n_rows, sq_norm, resolved)
            codes = lambda Z: snmf_module.encode(Z, V, state, resolved)  # noqa: E731
        else:
            start = kmeans_module.lloyd(sample, n_concepts, start_generator, max_iter=resolved["max_iter"],
                                        n_init=resolved["n_init"])[0]
            del sample
            V, state, info = _fit_kmeans(stream, start, generator, resolved["epochs"])
            codes = lambda Z: kmeans_module.encode(Z, V, state, resolved)  # noqa: E731
        activations = torch.empty(n_rows, n_concepts, device=V.device)
        filled = 0
        for Z in stream.batches("codes"):
            activations[filled:filled + Z.shape[0]] = codes(Z)
            filled += Z.shape[0]
    if method == "kmeans":  # activations are 1 / (1 + distance): the nearest distance comes back from the largest
        info["inertia"] = float((1.0 / activations.max(1).values.double() - 1.0).square().sum())
    info["passes"] = stream.passes
    state = {name: t.contiguous() for name, t in state.items()}
    return ConceptDictionary(V.contiguous(), activations, method, params, state, info)


class _Stream:
    """Minibatches of one layer of a store, as float32 on the working device, checked."""

    def __init__(self, store, key: str, batch_rows: int, present_only: bool, device, progress: bool):
        self.store, self.key, self.batch_rows, self.present_only = store, key, batch_rows, present_only
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.progress = progress
        self.passes = 0

    def batches(self, what: str, shard_order: list[int] | None = None):
        self.passes += 1
        bar = tqdm(total=self.store.n_rows, desc=f"{what} (pass {self.passes})", unit="row", disable=not self.progress)
        try:
            for Z in self.store.iter_rows(self.key, self.batch_rows, self.present_only, shard_order):
                bar.update(Z.shape[0])
                Z = Z.to(self.device, torch.float32)
                if not bool(torch.isfinite(Z.sum())) and not bool(torch.isfinite(Z).all()):
                    raise XlvlmError(f"{self.store.path}: layer {self.key} has rows with NaN or inf; with "
                                     f"present_only=False the rows of samples without a match are NaN")
                yield Z
        finally:
            bar.close()

    def sample(self, n_sample: int, n_concepts: int, generator: torch.Generator):
        """One pass: ``n_sample`` uniformly drawn rows (<= n_sample, D), the row count N, and
        sum ||Z_n||^2 (float64).

        Every row gets a random key and the rows with the ``n_sample`` smallest keys are kept,
        in a reservoir filled in place: beyond one minibatch, memory holds n_sample rows."""
        reservoir, keys = None, None
        n_rows, sq_norm = 0, 0.0
        for Z in self.batches("sample"):
            n_rows += Z.shape[0]
            sq_norm += float(torch.linalg.vector_norm(Z, dim=1).double().square().sum())
            if reservoir is None:
                reservoir = torch.empty(n_sample, Z.shape[1], dtype=Z.dtype, device=Z.device)
                keys = torch.full((n_sample,), float("inf"), device=Z.device)
            batch_keys = torch.rand(Z.shape[0], generator=generator).to(Z.device)
            candidates = torch.nonzero(batch_keys < keys.max()).flatten()
            if not len(candidates):
                continue
            merged = torch.cat([keys, batch_keys[candidates]])
            kept = torch.zeros(len(merged), dtype=torch.bool, device=Z.device)
            kept[merged.topk(n_sample, largest=False).indices] = True
            free = torch.nonzero(~kept[:n_sample]).flatten()
            incoming = candidates[kept[n_sample:]]
            for first in range(0, len(free), 512):  # in slices: no (n_sample, D) temporary
                reservoir[free[first:first + 512]] = Z[incoming[first:first + 512]]
            keys[free] = batch_keys[incoming]
        if n_rows < n_concepts:
            raise XlvlmError(f"n_concepts={n_concepts} is more than the {n_rows} rows of layer {self.key} in "
                             f"{self.store.path}; ask for at most {n_rows} concepts")
        filled = torch.isfinite(keys)
        return reservoir[filled] if not bool(filled.all()) else reservoir, n_rows, sq_norm


def _fit_snmf(stream: _Stream, centroids, n_rows: int, sq_norm: float, options: dict):
    """Fitting passes from the start centroids (K, D) -> V (K, D), state, info."""
    k = centroids.shape[0]
    scale = torch.tensor((sq_norm / n_rows) ** 0.5, dtype=torch.float32, device=stream.device)
    penalty = options["l1"] * float(scale)
    _, V = snmf_module.normalise_rows(torch.ones(1, k, device=centroids.device), centroids)
    history, converged = [], False
    for _ in range(options["max_passes"]):
        G = torch.zeros(k, k, dtype=torch.float64, device=V.device)
        H = torch.zeros(k, V.shape[1], dtype=torch.float64, device=V.device)
        code_sum = 0.0
        for Z in stream.batches("snmf"):
            U = nonneg_codes(Z, V, l1=penalty, max_iter=options["codes_iter"], tol=1e-4)[0]
            # float32 products per minibatch, summed in float64 across minibatches
            G += (U.T @ U).double()
            H += (U.T @ Z).double()
            code_sum += float(U.double().sum())
        V64 = V.double()
        fit_term = sq_norm - 2.0 * float((H * V64).sum()) + float((G * (V64 @ V64.T)).sum())
        history.append(0.5 * max(fit_term, 0.0) + penalty * code_sum)
        ridge = 1e-10 * G.diagonal().mean().clamp_min(1e-30)
        V_new = torch.linalg.solve(G + ridge * torch.eye(k, dtype=G.dtype, device=G.device), H).float()
        _, V = snmf_module.normalise_rows(torch.ones(1, k, device=V.device), V_new)
        if len(history) > 1 and history[-2] - history[-1] <= options["tol"] * abs(history[-2]):
            converged = True
            break
    info = {"n_iter": len(history), "converged": converged, "objective": history[-1], "l1_penalty": penalty}
    return V, {"feature_scale": scale}, info


def _fit_kmeans(stream: _Stream, C, generator, epochs: int):
    """Minibatch epochs from the start centroids C (K, D) -> C, state, info."""
    k = C.shape[0]
    counts = torch.zeros(k, dtype=torch.float64, device=C.device)
    n_shards = len(stream.store.manifest["shards"])
    for _ in range(epochs):
        order = torch.randperm(n_shards, generator=generator).tolist()
        given = torch.zeros(k, dtype=torch.float64, device=C.device)
        last = None
        for Z in stream.batches("kmeans", order):
            labels = squared_distances(Z, C).argmin(1)
            members = torch.nn.functional.one_hot(labels, k).to(Z.dtype)
            n = members.sum(0).double()
            counts += n
            given += n
            step = (members.T @ Z).double() - n.unsqueeze(1) * C.double()
            C = (C.double() + step / counts.clamp_min(1).unsqueeze(1)).float()
            last = Z
        for dead in torch.nonzero(given == 0).flatten().tolist():
            closest = squared_distances(last, C).min(1).values
            far = int(closest.argmax())
            C[dead] = last[far]
            counts[dead] = 0
    return C, {}, {"n_iter": epochs}
