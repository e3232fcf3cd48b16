"""Reading a feature store's layer in minibatches, for the estimators' ``fit_passes``.

Notation (``xlvlm.concepts``): Z (N, D) the store's rows at one layer, never in memory at
once; Z_b (B, D) one minibatch (B = batch_rows; shards are read through slices); U (N, K) the
codes returned.

Memory: one minibatch and the pages of one open shard, the ``init_rows`` sample, O(K D)
statistics, and the (N, K) activations returned (K/D of the store's size); never Z.
``fit_store`` makes these passes over the store:

1. **Sample pass**: ``init_rows`` rows drawn uniformly without replacement (each row gets a
   random key; the rows with the smallest keys are kept). The estimator starts from them
   (as a first ``partial_fit`` does, without its online step), as the in-memory fits start
   from their own sample.
2. **Fitting passes**: ``estimator.fit_passes`` (SemiNMF: until converged, each pass one
   outer iteration; MiniBatchKMeans: ``epochs`` passes, the shards in a new random order each).
3. **Codes pass**: the activations for the final components, exactly as
   ``ConceptDictionary.transform`` computes them.

Defaults and measurements (among them why ``n_init=10`` suits many concepts): docs/scale.md
and bench/RESULTS.md.
"""

from __future__ import annotations

from pathlib import Path

import torch

from xlvlm.errors import XlvlmError
from xlvlm.progress import announce, bars_shown
from xlvlm.progress import bar as progress_bar


def fit_store(estimator, store, layer, batch_rows: int, present_only: bool, progress: bool):
    """Fit a streaming estimator (SemiNMF, MiniBatchKMeans) on a store's rows at ``layer``
    -> (activations (N, K) in store order, passes made over the store)."""
    from xlvlm.features.store import FeatureStore

    if isinstance(store, (str, Path)):  # a folder; stores (also in-memory ones) are used as given
        store = FeatureStore(Path(store))
    stream = _Stream(store, store.layer_key(layer), batch_rows, present_only, estimator.device, progress)
    estimator._reset()
    estimator._check_params()
    generator = estimator._generator("cpu")  # sample keys and shard orders, on the CPU
    n_shards = len(store.manifest.shards)
    k = estimator.concepts_count()
    with torch.no_grad():
        sample, n_rows = stream.sample(estimator.init_rows, k, generator)
        estimator._start_on(estimator._rows(sample, reset=True, device=stream.device))
        del sample
        estimator.fit_passes(lambda: stream.batches("fit", torch.randperm(n_shards, generator=generator).tolist()))
        activations = torch.empty(n_rows, k, device=stream.device)
        filled = 0
        for Z in stream.batches("codes"):
            activations[filled:filled + Z.shape[0]] = estimator.transform(Z).to(stream.device)
            filled += Z.shape[0]
    if hasattr(estimator, "_counts"):  # k-means: the nearest distance comes back from the largest activation
        estimator.info_["inertia"] = float((1.0 / activations.max(1).values.double() - 1.0).square().sum())
    return activations, stream.passes


class _Stream:
    """Minibatches of one layer of a store, as float32 on the working device, checked."""

    def __init__(self, store, key: str, batch_rows: int, present_only: bool, device, progress: bool):
        self.store, self.key, self.batch_rows, self.present_only = store, key, batch_rows, present_only
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.progress = progress
        self.passes = 0

    def batches(self, what: str, shard_order: list[int] | None = None):
        self.passes += 1
        # Without a bar (a log, not a terminal), one line per pass says the fit is moving.
        announce(f"{what}: pass {self.passes} over {self.store.n_rows} rows", self.progress and not bars_shown())
        bar = progress_bar(total=self.store.n_rows, desc=f"{what} (pass {self.passes})", unit="row",
                           enabled=self.progress)
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
        """One pass: ``n_sample`` uniformly drawn rows (<= n_sample, D) and the row count N.

        Every row gets a random key and the rows with the ``n_sample`` smallest keys are kept,
        in a reservoir filled in place: beyond one minibatch, memory holds n_sample rows."""
        reservoir, keys = None, None
        n_rows = 0
        for Z in self.batches("sample"):
            n_rows += Z.shape[0]
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
        return reservoir[filled] if not bool(filled.all()) else reservoir, n_rows
