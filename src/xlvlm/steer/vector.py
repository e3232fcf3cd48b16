"""SteeringVector: one vector per layer, built by a strategy (an aggregator), and ``apply``.

A strategy is an aggregator, a plain function of :mod:`xlvlm.steer.aggregators`
(``mean_difference``, ``mean_of_shifts``, ``pca``, ``concept``): ``(source_rows (N_s, D),
target_rows (N_t, D), **options) -> (D,)``; its name in ``AGGREGATORS`` ("mean-diff", ...) is
how the command line gives it. Three ways to make a vector: ``from_stores`` (an aggregator on two
feature stores, per layer), ``train`` (the same on two lists of samples, extracted in memory)
and ``from_concepts`` (two concepts of a dictionary); ``load`` reads one. ``compute``,
``mean_difference`` and ``from_store_concepts`` are front doors to ``from_stores``.

The research code's concept steering (``concept_pairs``): concepts learnt on the source rows
only, every ordered pair i -> j kept as its own vector (the caller picks one, e.g. by the
answers it produces).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open

from xlvlm.errors import XlvlmError
from xlvlm.layerkeys import layer_key
from xlvlm.io import atomic_save_tensors, check_magnitudes, refuse_existing_output
from xlvlm.steer import aggregators as agg
from xlvlm.steer.protocol import SteeringBase
from xlvlm.steer.registry import METHODS



def check_finite(vectors: dict[str, torch.Tensor], where: str, what_to_do: str) -> None:
    """Refuse NaN/inf in any layer's vector, or a norm past float32's range
    (:func:`xlvlm.io.check_magnitudes`): added to the residual stream, it would turn every later
    state (and so every prediction) into NaN."""
    check_magnitudes(vectors, where, what_to_do)


def _rows(store, layer) -> torch.Tensor:
    features = store.features(layer, present_only=True).float()
    if features.shape[0] == 0:
        raise XlvlmError(f"store {store.path} has no present rows at layer {layer}")
    return features


def _paired_rows(source, target, layer) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, D) source and (P, D) target rows, aligned over sample ids present in both stores."""
    from xlvlm.features.pairing import paired_rows

    source_rows, target_rows, _ = paired_rows(source, target, layer, "a paired method", otherwise=", or use mean-diff")
    return source_rows, target_rows


def _layer_list(layers) -> list:
    return [layers] if isinstance(layers, (int, str)) else list(layers)


def _aggregate(aggregator, source_rows, target_rows, options) -> tuple[torch.Tensor, dict | None]:
    result = aggregator(source_rows, target_rows, **options)
    return result if isinstance(result, tuple) else (result, None)


def _settings(aggregator, options: dict) -> dict:
    """The aggregator's options as it ran (its defaults filled in), the plain values only."""
    import inspect

    try:
        params = list(inspect.signature(aggregator).parameters.values())[2:]
    except (TypeError, ValueError):  # a callable without a readable signature
        params = []
    settings = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    settings.update(options)
    return {k: v for k, v in settings.items() if isinstance(v, (int, float, str, bool))}


def _with_details(meta: dict, details: dict) -> dict:
    """Per-layer details of an aggregator in the metadata: {"concepts": {layer: [i, j]}, ...}."""
    for key, layer_details in details.items():
        for name, value in layer_details.items():
            meta.setdefault(name, {})[key] = value
    return meta


def _aggregator(aggregator, options: dict):
    """The aggregator function (given as one or by its name in AGGREGATORS), its options checked
    against the ones it takes."""
    function = aggregator if callable(aggregator) else agg.aggregator_named(aggregator)
    takes = agg.option_names(function)
    unknown = [] if takes is None else sorted(set(options) - takes)
    if unknown:
        what = "options " + ", ".join(sorted(takes)) if takes else "no options"
        raise XlvlmError(f"method {agg.name_of(function)!r} takes {what} (got {', '.join(unknown)})")
    return function


@dataclass
class SteeringVector(SteeringBase):
    """Vectors per layer key ("3", "final", ...), each (D,), plus what they were made from."""

    layer_activations: dict[str, torch.Tensor]
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        # One layer-key rule (xlvlm.layerkeys): {3: v} and {"3": v} are the same vector.
        self.layer_activations = {layer_key(k): v for k, v in self.layer_activations.items()}

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def from_stores(cls, source, target, layers, aggregator=agg.mean_difference, **options) -> "SteeringVector":
        """The vector of ``aggregator`` at each layer, from two feature stores (same model).

        aggregator: a function ``(source_rows (N_s, D), target_rows (N_t, D), **options) -> (D,)``
        (see :mod:`xlvlm.steer.aggregators`) or its name there ("mean-diff", "pca", ...); one
        marked ``needs_pairs`` gets the rows of the sample ids present in both stores, aligned.
        options go to the aggregator (a name it does not take is a one-line error).
        """
        aggregator = _aggregator(aggregator, options)
        if source.hidden_size != target.hidden_size:
            raise XlvlmError(f"hidden sizes differ: {source.path} has {source.hidden_size}, {target.path} has "
                             f"{target.hidden_size}; extract source and target with the same model")
        keys = [source.layer_key(layer) for layer in _layer_list(layers)]
        for key in keys:
            target.layer_key(key)
        pairs = getattr(aggregator, "needs_pairs", False)
        vectors, details = {}, {}
        for key in keys:
            s, t = _paired_rows(source, target, key) if pairs else (_rows(source, key), _rows(target, key))
            try:
                vectors[key], info = _aggregate(aggregator, s, t, options)
            except XlvlmError as exc:
                raise XlvlmError(f"layer {key}: {exc}") from None
            if info:
                details[key] = info
        method = agg.name_of(aggregator)
        check_finite(vectors, f"{method} from {source.path} and {target.path}",
                     "the stores' values overflow float32; check them with FeatureStore.verify()")
        for key, vector in vectors.items():
            if not bool(vector.any()):
                raise XlvlmError(f"{method} from {source.path} and {target.path}: the vector for layer {key} is zero "
                                 f"(source and target rows do not differ); steering with it would change nothing, "
                                 f"give stores of different samples or answers")
        meta = {"method": method, "model": source.model, "target_model": target.model,
                "source": str(source.path), "target": str(target.path), "layers": keys,
                "selector": source.selector}
        meta.update(_settings(aggregator, options))
        if details and getattr(aggregator, "row_details", ()):
            meta["row_details"] = list(aggregator.row_details)  # the details a sweep row shows
        return cls(vectors, _with_details(meta, details))

    @classmethod
    def compute(cls, source, target, layers, method: str = "mean-diff", **options) -> "SteeringVector":
        """``from_stores`` with the strategy named ``method`` (one of METHODS): the command line's door."""
        return cls.from_stores(source, target, layers, method, **options)

    @classmethod
    def mean_difference(cls, source, target, layers) -> "SteeringVector":
        """``from_stores`` with mean(target rows) - mean(source rows) per layer."""
        return cls.from_stores(source, target, layers, agg.mean_difference)

    @classmethod
    def from_store_concepts(cls, source, target, layers, n_concepts: int = 8, concept_method: str = "kmeans",
                            seed: int = 0) -> "SteeringVector":
        """``from_stores`` with :func:`~xlvlm.steer.aggregators.concept`: v = V_j - V_i per layer, the
        concepts learnt on the union of the two stores' rows; the metadata records per layer the
        pair ``concepts`` [i, j], their ``purity`` and ``concept_sizes``."""
        return cls.from_stores(source, target, layers, agg.concept, n_concepts=int(n_concepts),
                               concept_method=concept_method, seed=int(seed))

    @classmethod
    def train(cls, vlm, positive, negative=None, layers=("final",), method=agg.mean_difference,
              select: str = "last-prompt", batch_size: int = 8, **options) -> "SteeringVector":
        """One call from samples: extract in memory, then aggregate, towards ``positive``.

        positive, negative: lists of samples (``{"id", "image", "prompt"}`` ...); or ``positive``
        alone as a list of (negative_sample, positive_sample) pairs. The vector points from the
        negative samples' states to the positive ones' (``from_stores(negative, positive)``).
        method: an aggregator (:mod:`xlvlm.steer.aggregators`) or its command-line name. Paired
        methods need pairs, or two lists of the same length (row i of each is a pair).
        """
        from xlvlm.steer.train import train_vector

        return train_vector(cls, vlm, positive, negative, layers, method, select, batch_size, options)

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
    def from_concepts(cls, dictionary, i: int | None, j: int, layer, model: str = "") -> "SteeringVector":
        """v = V_j - V_i: move from concept i towards concept j; with i None, v = V_j: along
        concept j alone (e.g. one feature of a pretrained SAE). ``dictionary``: a
        ConceptDictionary, a fitted estimator (``components_``) or the components (K, D)."""
        components = getattr(dictionary, "components", getattr(dictionary, "components_", dictionary))
        k = components.shape[0]
        if not ((i is None or 0 <= i < k) and 0 <= j < k):
            raise XlvlmError(f"concept indices {i}, {j} out of range: the dictionary has {k} concepts")
        vector = components[j].float() - (0 if i is None else components[i].float())
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
    # ---- the Steering protocol (xlvlm.steer.protocol): fixed, the same for every sample ----
    context_layer = None
    what = "steering vector"

    @property
    def hidden_size(self) -> int:
        """D, the size of the vectors (of the first layer's; the hooks check every layer's)."""
        return int(next(iter(self.layer_activations.values())).shape[-1])

    def batch_vectors(self, states, sample_ids) -> dict[str, torch.Tensor]:
        """{layer: (D,)}: the same vectors for every sample (``apply`` steers with them)."""
        return self.layer_activations

    # ---- files -----------------------------------------------------------------------------
    def save(self, path, overwrite: bool = False) -> Path:
        """Write a safetensors file (tensors "layer/<key>", metadata as JSON in the header); an
        existing file is refused unless ``overwrite=True``."""
        path = Path(path)
        refuse_existing_output(path, overwrite=overwrite, option="path")
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
