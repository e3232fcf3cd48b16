"""SteeringVector: one vector per layer, the methods that compute it, and ``apply``.

Notation: S (N_s, D) source representations, T (N_t, D) target representations at one layer;
pairs (s_i, t_i) share a sample id.

  mean-diff       v = mean(T) - mean(S)                       (shift of means)
  mean-of-shifts  v = mean_i (t_i - s_i) over paired ids
  pca             u = first right singular vector of the (uncentred) paired differences (t_i - s_i),
                  sign chosen so u . mean-diff > 0; v = (u . mean(t_i - s_i)) u
  concept         v = V_j - V_i for concepts i -> j of a dictionary: either given (``from_concepts``),
                  or learnt per layer on the union of S and T rows (``from_store_concepts``), with i the
                  concept whose members are most often source rows and j the one most often target rows;
                  or, as the research code does (``concept_pairs``), learnt on S only, every ordered
                  pair i -> j kept (the caller picks one, e.g. by the answers it produces)
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open

from xlvlm.errors import XlvlmError
from xlvlm.layerkeys import layer_key
from xlvlm.io import atomic_save_tensors

METHODS = ("mean-diff", "mean-of-shifts", "pca", "concept")


def check_finite(vectors: dict[str, torch.Tensor], where: str, what_to_do: str) -> None:
    """Refuse NaN/inf in any layer's vector: added to the residual stream, it would turn every
    later state (and so every prediction) into NaN."""
    for key, vector in vectors.items():
        if not bool(torch.isfinite(vector).all()):
            raise XlvlmError(f"{where}: the vector for layer {key} holds NaN or inf; {what_to_do}")


def _rows(store, layer) -> torch.Tensor:
    features = store.features(layer, present_only=True).float()
    if features.shape[0] == 0:
        raise XlvlmError(f"store {store.path} has no present rows at layer {layer}")
    return features


def _paired(source, target, layer) -> torch.Tensor:
    """(P, D) differences t_i - s_i over sample ids present in both stores."""
    def by_id(store):
        present = store.present.tolist()
        rows = store.features(layer)
        if store.manifest.get("rows_per_sample") != 1:
            raise XlvlmError(f"store {store.path} has several rows per sample; paired methods need one")
        return {sid: rows[i] for i, (sid, ok) in enumerate(zip(store.ids, present)) if ok}

    s, t = by_id(source), by_id(target)
    common = [sid for sid in s if sid in t]
    if not common:
        raise XlvlmError(f"stores {source.path} and {target.path} share no present sample id; "
                         f"paired methods need the same samples in both (use mean-diff otherwise)")
    return torch.stack([t[sid].float() - s[sid].float() for sid in common])


@dataclass
class SteeringVector:
    """Vectors per layer key ("3", "final", ...), each (D,), plus what they were made from."""

    layer_activations: dict[str, torch.Tensor]
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        # One layer-key rule (xlvlm.layerkeys): {3: v} and {"3": v} are the same vector.
        self.layer_activations = {layer_key(k): v for k, v in self.layer_activations.items()}

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def compute(cls, source, target, layers, method: str = "mean-diff", **options) -> "SteeringVector":
        """The vector of ``method`` (one of METHODS) from two stores.

        options: only for ``concept``, passed to :meth:`from_store_concepts` (``n_concepts``,
        ``concept_method``, ``seed``); the other methods take none.
        """
        if method not in METHODS:
            raise XlvlmError(f"unknown steering method {method!r}: use one of {', '.join(METHODS)}")
        if method == "concept":
            return cls.from_store_concepts(source, target, layers, **options)
        if options:
            raise XlvlmError(f"method {method!r} takes no options (got {', '.join(sorted(options))}); "
                             f"only 'concept' does")
        if method == "mean-diff":
            return cls.mean_difference(source, target, layers)
        if method == "mean-of-shifts":
            return cls.mean_of_shifts(source, target, layers)
        return cls.pca(source, target, layers)

    @classmethod
    def _build(cls, source, target, layers, method: str, fn) -> "SteeringVector":
        layers = [layers] if isinstance(layers, (int, str)) else list(layers)
        if source.hidden_size != target.hidden_size:
            raise XlvlmError(f"hidden sizes differ: {source.path} has {source.hidden_size}, {target.path} has "
                             f"{target.hidden_size}; extract source and target with the same model")
        keys = [source.layer_key(layer) for layer in layers]
        for key in keys:
            target.layer_key(key)
        vectors = {key: fn(key) for key in keys}
        check_finite(vectors, f"{method} from {source.path} and {target.path}",
                     "the stores' values overflow float32; check them with FeatureStore.verify()")
        meta = {"method": method, "model": source.model, "target_model": target.model,
                "source": str(source.path), "target": str(target.path), "layers": keys,
                "selector": source.selector}
        return cls(vectors, meta)

    @classmethod
    def mean_difference(cls, source, target, layers) -> "SteeringVector":
        return cls._build(source, target, layers, "mean-diff",
                          lambda key: _rows(target, key).mean(0) - _rows(source, key).mean(0))

    @classmethod
    def mean_of_shifts(cls, source, target, layers) -> "SteeringVector":
        return cls._build(source, target, layers, "mean-of-shifts", lambda key: _paired(source, target, key).mean(0))

    @classmethod
    def pca(cls, source, target, layers) -> "SteeringVector":
        def first_direction(key):
            diffs = _paired(source, target, key)
            mean = diffs.mean(0)
            # Uncentred on purpose: the direction that carries most of the shifts' energy. After
            # centring, a shift shared by all pairs would vanish and only the noise would remain.
            _, _, vh = torch.linalg.svd(diffs, full_matrices=False)
            u = vh[0]
            if u @ mean < 0:
                u = -u
            return (u @ mean) * u

        return cls._build(source, target, layers, "pca", first_direction)

    @classmethod
    def from_store_concepts(cls, source, target, layers, n_concepts: int = 8, concept_method: str = "kmeans",
                            seed: int = 0) -> "SteeringVector":
        """v = V_j - V_i per layer, with the concepts learnt on the union of the two stores' rows.

        At each layer a dictionary of ``n_concepts`` concepts (``xlvlm.concepts.learn_concepts``
        with ``concept_method``) is learnt on the present source and target rows together; each
        row belongs to its most active concept (for k-means: its cluster). i is the concept whose
        members are the largest share of source rows, j the one whose members are the largest
        share of target rows (ties: the larger concept, then the lower index). The metadata
        records, per layer, the pair [i, j], their purity [share of source rows in i, share of
        target rows in j] and their sizes. Raises XlvlmError when i == j: the concepts do not
        separate source from target.

        k-means (the default) gives centroids, at the data's scale; other methods' components are
        rescaled (see below), which suits additive dictionaries (Z ~= U V: snmf, nndl, nmf,
        topk-sae) and not ``simple``.
        """
        from xlvlm.concepts import learn_concepts

        details = {}

        def vector(key):
            s, t = _rows(source, key), _rows(target, key)
            if s.shape[1] != t.shape[1]:
                raise XlvlmError(f"layer {key}: source rows have {s.shape[1]} features, target rows {t.shape[1]}")
            cd = learn_concepts(torch.cat([s, t]), method=concept_method, n_concepts=n_concepts, seed=seed)
            labels = cd.activations.argmax(1)
            is_source = torch.cat([torch.ones(len(s), dtype=torch.bool), torch.zeros(len(t), dtype=torch.bool)])
            sizes = torch.bincount(labels, minlength=cd.n_concepts)
            n_source = torch.bincount(labels[is_source], minlength=cd.n_concepts)
            used = [k for k in range(cd.n_concepts) if sizes[k] > 0]
            share = {k: float(n_source[k]) / float(sizes[k]) for k in used}
            i = max(used, key=lambda k: (share[k], int(sizes[k]), -k))
            j = max(used, key=lambda k: (1.0 - share[k], int(sizes[k]), -k))
            if i == j:
                raise XlvlmError(
                    f"layer {key}: the {len(used)} {concept_method} concept(s) learnt on source and target do not "
                    f"separate them (every concept holds {100 * share[i]:.0f}% source rows); use another method "
                    f"or layer, or more concepts")
            components = cd.components.float()
            if cd.method != "kmeans":
                # k-means components are centroids, at the data's scale, so V_j - V_i is comparable to
                # mean-diff. Other methods' components have an arbitrary scale (the activations carry
                # the rest): scale each by the mean activation of its members, so the vector is the
                # difference of the two concepts' average contributions to their members' rows.
                for k in (i, j):
                    components[k] = components[k] * cd.activations[labels == k, k].float().mean()
            details[key] = {"concepts": [i, j], "purity": [share[i], 1.0 - share[j]],
                            "sizes": [int(sizes[i]), int(sizes[j])]}
            return cls.from_concepts(components, i, j, key).layer_activations[key]

        sv = cls._build(source, target, layers, "concept", vector)
        sv.metadata.update({
            "concept_method": concept_method, "n_concepts": int(n_concepts), "seed": int(seed),
            "concepts": {k: d["concepts"] for k, d in details.items()},
            "purity": {k: d["purity"] for k, d in details.items()},
            "concept_sizes": {k: d["sizes"] for k, d in details.items()},
        })
        return sv

    @classmethod
    def concept_pairs(cls, source, layer, n_concepts: int = 8, concept_method: str = "kmeans",
                      seed: int = 0) -> dict[tuple[int, int], "SteeringVector"]:
        """The research code's intra-cluster steering: concepts learnt on the source rows only
        (k-means by default: the components are centroids), and every ordered pair i != j as
        its own vector v = V_j - V_i (move from concept i towards j), keyed (i, j).

        The research code stores V_i - V_j under the name "concept_i_to_j", the opposite of
        its name; here the vector for (i, j) points from i to j. Nothing is chosen: the caller
        evaluates the K (K - 1) vectors and keeps one.
        """
        from xlvlm.concepts import learn_concepts

        key = source.layer_key(layer)
        cd = learn_concepts(_rows(source, key), method=concept_method, n_concepts=n_concepts, seed=seed)
        pairs = {}
        for i in range(cd.n_concepts):
            for j in range(cd.n_concepts):
                if i != j:
                    sv = cls.from_concepts(cd, i, j, key, model=source.model)
                    sv.metadata.update({"source": str(source.path), "concept_method": concept_method,
                                        "n_concepts": int(n_concepts), "seed": int(seed),
                                        "concepts_learnt_on": "source", "selector": source.selector})
                    pairs[(i, j)] = sv
        return pairs

    @classmethod
    def from_concepts(cls, dictionary, i: int, j: int, layer, model: str = "") -> "SteeringVector":
        """v = V_j - V_i: move from concept i towards concept j (a dictionary's components (K, D))."""
        components = dictionary.components if hasattr(dictionary, "components") else dictionary
        k = components.shape[0]
        if not (0 <= i < k and 0 <= j < k):
            raise XlvlmError(f"concept indices {i}, {j} out of range: the dictionary has {k} concepts")
        vector = components[j].float() - components[i].float()
        return cls({str(layer): vector}, {"method": "concept", "model": model, "layers": [str(layer)],
                                          "concepts": [i, j]})

    # ---- algebra ---------------------------------------------------------------------------
    def _combine(self, other: "SteeringVector", sign: float) -> "SteeringVector":
        keys = list(dict.fromkeys([*self.layer_activations, *other.layer_activations]))
        out = {}
        for key in keys:
            a = self.layer_activations.get(key)
            b = other.layer_activations.get(key)
            out[key] = a if b is None else (sign * b if a is None else a + sign * b)
        return SteeringVector(out, {"method": "combination", "parts": [self.metadata, other.metadata]})

    def __add__(self, other):
        return self._combine(other, 1.0)

    def __sub__(self, other):
        return self._combine(other, -1.0)

    def __mul__(self, scalar: float):
        return SteeringVector({k: v * float(scalar) for k, v in self.layer_activations.items()},
                              dict(self.metadata, scale=float(scalar) * self.metadata.get("scale", 1.0)))

    __rmul__ = __mul__

    def __neg__(self):
        return self * -1.0

    def normalized(self) -> "SteeringVector":
        """Unit norm at every layer (alpha then sets the norm of what is added)."""
        return SteeringVector({k: v / v.norm().clamp_min(1e-12) for k, v in self.layer_activations.items()},
                              dict(self.metadata, normalized=True))

    @property
    def layers(self) -> list[str]:
        return list(self.layer_activations)

    def norms(self) -> dict[str, float]:
        return {k: float(v.norm()) for k, v in self.layer_activations.items()}

    # ---- use -------------------------------------------------------------------------------
    @contextmanager
    def apply(self, vlm, alpha: float = 1.0, positions="all", operator: str = "add", condition=None):
        """Steer ``vlm`` while inside the context; hooks are removed on exit, even on error.

        positions: "all", "generated", "from-last-prompt", or an int prompt index.
        operator: "add" or "project-out". condition: a :class:`Condition` or None.
        """
        from xlvlm.steer.apply import steering

        with steering(vlm, self.layer_activations, alpha=alpha, positions=positions, operator=operator,
                      condition=condition) as state:
            yield state

    # ---- files -----------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write a safetensors file (tensors "layer/<key>", metadata as JSON in the header)."""
        path = Path(path)
        tensors = {f"layer/{k}": v.float() for k, v in self.layer_activations.items()}
        check_finite(tensors, f"{path}: not written", "compute it from other stores or layers")
        atomic_save_tensors(path, tensors, metadata={"xlvlm": json.dumps(self.metadata)})
        return path

    @classmethod
    def load(cls, path) -> "SteeringVector":
        path = Path(path)
        if not path.is_file():
            raise XlvlmError(f"{path}: steering vector file not found; make one with `xlvlm steer compute`")
        try:
            with safe_open(path, framework="pt") as handle:
                meta = json.loads((handle.metadata() or {}).get("xlvlm", "{}"))
                vectors = {name.split("/", 1)[1]: handle.get_tensor(name) for name in handle.keys()
                           if name.startswith("layer/")}
        except Exception as exc:  # safetensors raises its own error types; json its own
            raise XlvlmError(f"{path}: not a readable steering vector ({type(exc).__name__}); recompute it")
        if not vectors:
            raise XlvlmError(f"{path}: holds no layer vectors (tensors named layer/<key>); is it a steering vector? "
                             f"Make one with `xlvlm steer compute`")
        if not isinstance(meta, dict):
            raise XlvlmError(f"{path}: its 'xlvlm' metadata is not a JSON object; recompute it")
        sizes = set()
        for key, vector in vectors.items():
            if vector.dim() != 1 or not vector.is_floating_point() or vector.numel() == 0:
                raise XlvlmError(f"{path}: the vector for layer {key} has shape {tuple(vector.shape)} ({vector.dtype}); "
                                 f"a steering vector holds one float vector (D,) per layer, recompute it")
            sizes.add(vector.numel())
        if len(sizes) > 1:
            raise XlvlmError(f"{path}: its layers' vectors have different sizes {sorted(sizes)}; recompute it")
        check_finite(vectors, str(path), "recompute it")
        return cls(vectors, meta)

    def __repr__(self) -> str:
        norms = ", ".join(f"{k!r}: {n:.3g}" for k, n in self.norms().items())
        return f"SteeringVector(method={self.metadata.get('method')!r}, norms={{{norms}}})"
