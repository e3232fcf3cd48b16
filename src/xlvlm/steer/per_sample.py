"""Per-sample steering vectors (P2S, "prompt to steer"): one vector per sample and layer.

From two stores of the same samples under a contrast (e.g. the positive and the negative answer
forced after the same image and question, or two framings of the prompt), each sample's vector
is the difference of its own two states:

    v_i = t_i - s_i     at each layer, for every sample id present in both stores

Their mean is the fixed vector of ``mean-of-shifts`` (the mean difference over these samples).
As an oracle at evaluation time, :meth:`PerSampleSteering.apply` steers each sample of a batch
with its own vector, looked up by the sample's ``id`` (the vectors of the test samples
themselves must then be known); :class:`~xlvlm.steer.learned.LearnedSteering` (L2S) learns to
predict them from the input alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from xlvlm.errors import XlvlmError, argument
from xlvlm.io import atomic_save_tensors, check_magnitudes, read_tensors, refuse_existing_output
from xlvlm.layerkeys import layer_key
from xlvlm.steer.protocol import SteeringBase

META_KEY = "xlvlm_per_sample"
REMEDY = "recompute it with PerSampleSteering.from_stores (or `xlvlm steer compute --per-sample`)"


@dataclass
class PerSampleSteering(SteeringBase):
    """Vectors per layer key, each (N, D): row i is sample ``ids[i]``'s own steering vector."""

    vectors: dict[str, torch.Tensor]
    ids: list[str]
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        self.vectors = {layer_key(k): v for k, v in self.vectors.items()}
        self.ids = [str(i) for i in self.ids]
        _check(self.vectors, self.ids, "per-sample steering")
        self._row = {sid: i for i, sid in enumerate(self.ids)}

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def from_stores(cls, source, target, layers) -> "PerSampleSteering":
        """t_i - s_i per layer for every sample id present in both stores (in the source's order).

        source, target: stores of the same model with one row per sample (FeatureStore or in
        memory), e.g. the states of the negative and of the positive forced answer.
        """
        from xlvlm.features.pairing import paired_rows
        from xlvlm.steer.vector import _layer_list, check_finite

        if source.hidden_size != target.hidden_size:
            raise XlvlmError(f"hidden sizes differ: {source.path} has {source.hidden_size}, {target.path} has "
                             f"{target.hidden_size}; extract source and target with the same model")
        vectors, ids = {}, None
        for layer in _layer_list(layers):
            key = source.layer_key(layer)
            target.layer_key(key)
            s, t, layer_ids = paired_rows(source, target, key, "per-sample steering")
            if ids is not None and layer_ids != ids:  # cannot happen with one row per sample; kept honest
                raise XlvlmError(f"layer {key}: the stores pair other samples than at the first layer")
            ids, vectors[key] = layer_ids, t - s
        check_finite(vectors, f"per-sample vectors from {source.path} and {target.path}",
                     "the stores' values overflow float32; check them with FeatureStore.verify()")
        meta = {"method": "per-sample", "model": source.model, "target_model": target.model,
                "source": str(source.path), "target": str(target.path), "layers": list(vectors),
                "selector": source.selector, "n_samples": len(ids)}
        return cls(vectors, ids, meta)

    @classmethod
    def train(cls, vlm, positive, negative, layers=("final",), select: str = "last-prompt",
              batch_size: int = 8) -> "PerSampleSteering":
        """One call from samples: extract both lists in memory (``xlvlm.extract(..., out=None)``),
        then ``from_stores(negative, positive)``: each sample's vector points from its negative
        version to its positive one, paired by ``id`` (give both versions of a sample the same id,
        e.g. the question with the wrong and with the right answer for a selector that reads the
        answer)."""
        from xlvlm.data.samples import check_samples
        from xlvlm.features.run import extract
        from xlvlm.hooks import require_vlm

        require_vlm(vlm, "PerSampleSteering.train")
        positive, negative = check_samples(positive, where="positive"), check_samples(negative, where="negative")
        stores = [extract(vlm, samples, layers=layers, select=select, batch_size=batch_size, progress=False)
                  for samples in (negative, positive)]
        vectors = cls.from_stores(*stores, layers=stores[0].layers)
        for key in ("source", "target", "target_model"):  # "<in memory>" says nothing
            vectors.metadata.pop(key, None)
        return vectors

    # ---- reading ---------------------------------------------------------------------------
    @property
    def layers(self) -> list[str]:
        return list(self.vectors)

    @property
    def hidden_size(self) -> int:
        """D, the size of every vector."""
        return int(next(iter(self.vectors.values())).shape[1])

    def __len__(self) -> int:
        return len(self.ids)

    def norms(self) -> dict[str, torch.Tensor]:
        """{layer: (N,)} the norm of each sample's vector."""
        return {k: v.float().norm(dim=1) for k, v in self.vectors.items()}

    def mean(self):
        """The fixed :class:`SteeringVector` of the mean vector per layer: mean_i (t_i - s_i), which is
        the mean difference mean(t) - mean(s) over these samples (``mean-of-shifts``)."""
        from xlvlm.steer.vector import SteeringVector

        return SteeringVector({k: v.float().mean(0) for k, v in self.vectors.items()},
                              dict(self.metadata, method="mean-of-shifts", n_samples=len(self.ids)))

    def vector(self, sample_id):
        """The :class:`SteeringVector` of one sample (a KeyError-free one-line error if unknown)."""
        from xlvlm.steer.vector import SteeringVector

        i = self._index(sample_id)
        return SteeringVector({k: v[i].float() for k, v in self.vectors.items()},
                              dict(self.metadata, method="per-sample", sample=str(sample_id)))

    def rows(self, sample_ids, layer) -> torch.Tensor:
        """(B, D) float32: the vectors of these samples at ``layer``, in their order."""
        key = layer_key(layer)
        if key not in self.vectors:
            raise XlvlmError(f"per-sample steering has no layer {key} (it has {', '.join(self.vectors)})")
        return self.vectors[key][[self._index(sid) for sid in sample_ids]].float()

    def subset(self, sample_ids) -> "PerSampleSteering":
        """The vectors of these samples only, in their order."""
        index = [self._index(sid) for sid in sample_ids]
        return PerSampleSteering({k: v[index] for k, v in self.vectors.items()}, [self.ids[i] for i in index],
                                 dict(self.metadata, n_samples=len(index)))

    def to_store(self):
        """An in-memory feature store of the vectors ({layer: (N, D)}, one sample per id): what
        :meth:`LearnedSteering.fit` and any stage taking a store read; ``.save(folder)`` keeps it."""
        from xlvlm.features.store import store_from_tensors

        return store_from_tensors(self.vectors, [{"id": sid} for sid in self.ids],
                                  model=str(self.metadata.get("model", "")), selector="per-sample")

    def _index(self, sample_id) -> int:
        try:
            return self._row[str(sample_id)]
        except KeyError:
            data = argument("data")
            what = f"give {data} with only those samples" if data.startswith("--") else "steer only those samples"
            raise XlvlmError(f"sample {str(sample_id)[:80]!r} has no per-sample vector: P2S holds one for each of "
                             f"the {len(self.ids)} samples of the stores it was computed from (ids "
                             f"{', '.join(repr(i[:40]) for i in self.ids[:3])}{', ...' if len(self.ids) > 3 else ''}); "
                             f"{what}, or steer any sample with learned steering (L2S)") from None

    # ---- the Steering protocol (xlvlm.steer.protocol): each sample its own vector, by id -----
    context_layer = None
    needs_ids = True
    what = "per-sample steering (P2S)"

    def batch_vectors(self, states, sample_ids) -> dict[str, torch.Tensor]:
        """{layer: (B, D)} the vectors of the batch's samples; a sample without one is a one-line
        error. ``apply`` (the oracle) steers each sample of a batch that ``vlm.predict`` /
        ``vlm.generate_batch`` generates with its own vector; a bare forward under it is refused."""
        return {key: self.rows(sample_ids, key) for key in self.vectors}

    # ---- files -----------------------------------------------------------------------------
    def save(self, path, overwrite: bool = False) -> Path:
        """Write a safetensors file: tensors "layer/<key>" (N, D), the ids and metadata as JSON in
        the header. NaN/inf is refused (nothing is written); so is an existing file, unless
        ``overwrite=True``."""
        from xlvlm.steer.vector import check_finite

        path = Path(path)
        refuse_existing_output(path, overwrite=overwrite, option="path")
        tensors = {f"layer/{k}": v.float() for k, v in self.vectors.items()}
        check_finite(tensors, f"{path}: not written", "compute it from other stores or layers")
        header = {"ids": self.ids, "metadata": self.metadata}
        atomic_save_tensors(path, tensors, metadata={META_KEY: json.dumps(header)})
        return path

    @classmethod
    def load(cls, path) -> "PerSampleSteering":
        """Read a file of :meth:`save`, checked: the ids (unique strings), one finite float (N, D)
        per layer with N = number of ids and one D. Anything else is a one-line XlvlmError."""
        path = Path(path)
        parsed, tensors = read_tensors(path, "per-sample steering file", REMEDY, header_key=META_KEY)
        if not isinstance(parsed, dict) or not isinstance(parsed.get("ids"), list) \
                or not isinstance(parsed.get("metadata", {}), dict):
            raise XlvlmError(f"{path}: its '{META_KEY}' header needs a list 'ids' and an object 'metadata'; {REMEDY}")
        ids = parsed["ids"]
        if not all(isinstance(i, str) for i in ids):
            raise XlvlmError(f"{path}: field 'ids' holds a value that is not a string; {REMEDY}")
        vectors = {name.split("/", 1)[1]: t for name, t in tensors.items() if name.startswith("layer/")}
        if not vectors or len(vectors) != len(tensors):
            raise XlvlmError(f"{path}: expected only tensors named layer/<key>, found "
                             f"{', '.join(sorted(tensors)[:5]) or 'none'}; {REMEDY}")
        try:
            _check(vectors, ids, str(path))
        except XlvlmError as exc:
            raise XlvlmError(f"{exc}; {REMEDY}") from None
        return cls({k: v.float() for k, v in vectors.items()}, ids, parsed.get("metadata", {}))

    def __repr__(self) -> str:
        mean_norms = ", ".join(f"{k!r}: {float(n.mean()):.3g}" for k, n in self.norms().items())
        return f"PerSampleSteering(samples={len(self.ids)}, mean norms={{{mean_norms}}})"


def _check(vectors: dict[str, torch.Tensor], ids: list[str], where: str) -> None:
    """One float (N, D) per layer, N = len(ids), one D, finite; unique ids."""
    if not vectors:
        raise XlvlmError(f"{where}: no layer vectors")
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise XlvlmError(f"{where}: sample id {duplicate[:80]!r} appears twice; ids must be unique")
    sizes = set()
    for key, vector in vectors.items():
        if not torch.is_tensor(vector) or vector.dim() != 2 or not vector.is_floating_point() \
                or vector.shape[0] != len(ids) or vector.shape[1] == 0:
            shape = tuple(vector.shape) if torch.is_tensor(vector) else type(vector).__name__
            raise XlvlmError(f"{where}: the vectors for layer {key} have shape {shape}; expected a float "
                             f"({len(ids)}, D), one row per sample id")
        check_magnitudes({key: vector}, where, "recompute them", noun="vectors")
        sizes.add(vector.shape[1])
    if len(sizes) > 1:
        raise XlvlmError(f"{where}: its layers' vectors have different sizes {sorted(sizes)}")
