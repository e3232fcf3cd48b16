"""Concept estimators, scikit-learn style: one class per decomposition method.

    est = SemiNMF(n_concepts=20, l1=0.05)       # plain-value parameters; __init__ does no work
    A = est.fit_transform(Z)                     # Z (N, D) -> A (N, K); est.components_ (K, D)
    est.transform(Z_new), est.inverse_transform(A), est.get_params(), est.set_params(l1=0.1)
    est.partial_fit(Z_b)                         # SemiNMF, KMeans, MiniBatchKMeans: minibatches

Notation (Overcomplete's, as in ``xlvlm.concepts.solvers``)::

    Z  (N, D)  features;   A  (N, K)  activations / codes;   D  (K, D)  dictionary (components_)

Learned attributes end in ``_``: ``components_`` (K, D), ``state_`` (extra tensors the encoder
needs, e.g. the PCA mean), ``n_iter_``, ``info_`` (fit diagnostics, JSON values). The math
lives in the solver modules (``xlvlm.concepts.solvers``); a class holds parameters, checks
input and keeps the learned state. ``learn_concepts`` is the front door that returns a
``ConceptDictionary``; ``to_dictionary``/``from_dictionary`` convert both ways.

Minibatches (``partial_fit``): the first call only starts the model from its rows (pass a
uniform sample of the data: ``learn_concepts_streaming`` draws one from a feature store);
every later call is one minibatch of the current pass, and ``end_pass()`` finishes a pass
(SemiNMF: the least-squares step for D over the whole pass; k-means: revives centroids that
got no row). ``fit_passes(read_pass)`` runs the passes, reading minibatches from
``read_pass()``, until the method's stopping rule.
"""

from __future__ import annotations

import inspect
import json
from typing import Any, Callable, ClassVar, Iterable

import torch

from xlvlm.concepts import simple
from xlvlm.concepts._validate import as_features
from xlvlm.concepts.dictionary import ConceptDictionary
from xlvlm.concepts.registry import register
from xlvlm.concepts.solvers import kmeans, nmf, nndl, pca, sae, snmf
from xlvlm.concepts.solvers.common import until_converged
from xlvlm.errors import XlvlmError

_NOT_OPTIONS = ("n_concepts", "seed", "device")


class ConceptEstimator:
    """The shared behaviour; subclasses name their parameters in ``__init__`` and their solver.

    ``defaults`` (class attribute): the method's own options and their defaults, i.e. every
    ``__init__`` parameter except n_concepts, seed and device.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    solver: ClassVar[Any]  # a module with encode(Z, components, state, options) and decode(...)
    defaults: ClassVar[dict[str, Any]]
    stream_ignores: ClassVar[tuple[str, ...]] = ()  # options a streaming fit does not read

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
        cls.defaults = {p.name: p.default for p in parameters if p.name not in _NOT_OPTIONS}

    # ---- parameters ----------------------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        return list(inspect.signature(cls.__init__).parameters)[1:]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Every constructor parameter and its current value."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params) -> "ConceptEstimator":
        """Change parameters (takes effect at the next fit); returns self."""
        unknown = sorted(set(params) - set(self._param_names()))
        if unknown:
            raise XlvlmError(f"unknown option(s) {', '.join(unknown)} for method {self.name!r}; "
                             f"its options are: {', '.join(self.defaults) or 'none'}")
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def options(self) -> dict[str, Any]:
        """The method's own options (``defaults``' keys) with their current values."""
        return {name: getattr(self, name) for name in self.defaults}

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.get_params().items() if k == "n_concepts" or v != self._default(k)}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    @classmethod
    def _default(cls, name: str) -> Any:
        return inspect.signature(cls.__init__).parameters[name].default

    def _check_params(self) -> None:
        k = self.n_concepts
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise XlvlmError(f"n_concepts must be a positive integer, got {k!r}")
        try:
            json.dumps({"seed": int(self.seed), **self.options()}, allow_nan=False)
        except (TypeError, ValueError):
            raise XlvlmError(f"options for {self.name!r} must be plain numbers, strings or None, "
                             f"got {self.options()!r}") from None

    def _check_rows(self, n_rows: int) -> None:
        if self.n_concepts > n_rows:
            raise XlvlmError(f"n_concepts={self.n_concepts} is more than the {n_rows} samples in X; "
                             f"ask for at most {n_rows} concepts or give more samples")

    def _generator(self, device: torch.device) -> torch.Generator:
        """The seeded generator of this fit on ``device`` (one per device, made on first use)."""
        generators = self.__dict__.setdefault("_generators", {})
        key = str(torch.device(device))
        if key not in generators:
            generators[key] = torch.Generator(device=device).manual_seed(int(self.seed))
        return generators[key]

    def _reset(self) -> None:
        for name in [n for n in vars(self) if n.endswith("_") or n.startswith("_")]:
            delattr(self, name)

    # ---- fitting and using -------------------------------------------------------------------
    def fit(self, X, y=None) -> "ConceptEstimator":
        """Learn the concepts of X (N, D) (torch or numpy, any real dtype); returns self."""
        self.fit_transform(X)
        return self

    def fit_transform(self, X, y=None) -> torch.Tensor:
        """Learn from X (N, D) and return its activations (N, K), float32 (= ``transform(X)``,
        up to the solver's tolerance for the iterative methods)."""
        self._check_params()
        Z = as_features(X, device=self.device)
        self._check_rows(Z.shape[0])
        self._reset()
        with torch.no_grad():
            components, activations, state, info = self._fit(Z, self._generator(Z.device))
        self._learned(components, state, info)
        return activations.contiguous()

    def _fit(self, Z: torch.Tensor, generator: torch.Generator):
        """-> (components (K, D), activations (N, K), state, info), from the solver."""
        return self.solver.fit(Z, self.n_concepts, generator, **self.options())

    def _learned(self, components: torch.Tensor, state: dict, info: dict) -> None:
        # Contiguous row-major tensors: matmul kernels pick their path by layout, so a dictionary
        # and its saved-and-loaded copy then transform to bit-identical codes.
        self.components_ = components.contiguous()
        self.state_ = {name: t.contiguous() for name, t in state.items()}
        self.info_ = info
        self.n_iter_ = info.get("n_iter")

    def _fitted(self) -> torch.Tensor:
        if not hasattr(self, "components_"):
            raise XlvlmError(f"this {type(self).__name__} is not fitted yet; call fit(X) first")
        return self.components_

    def transform(self, X) -> torch.Tensor:
        """Codes of rows X (N', D) with the components fixed -> (N', K), float32."""
        components = self._fitted()
        Z = as_features(X, device=components.device)
        if Z.shape[1] != components.shape[1]:
            raise XlvlmError(f"X has {Z.shape[1]} features but the concepts were learned on "
                             f"{components.shape[1]}; use features from the same layer and model")
        with torch.no_grad():
            return self.solver.encode(Z, components, self.state_, self.options())

    def inverse_transform(self, A) -> torch.Tensor:
        """Reconstruction in feature space: activations A (N', K) -> (N', D), float32."""
        components = self._fitted()
        codes = as_features(A, device=components.device, name="activations")
        if codes.shape[1] != components.shape[0]:
            raise XlvlmError(f"activations have {codes.shape[1]} columns; there are {components.shape[0]} concepts")
        with torch.no_grad():
            return self.solver.decode(codes, components, self.state_, self.options())

    # ---- minibatches -------------------------------------------------------------------------
    def partial_fit(self, X, y=None) -> "ConceptEstimator":
        """Learn from one minibatch X (B, D): the first call starts the model from X's rows (give
        it a uniform sample), each later one is a minibatch of the current pass. Returns self."""
        Z = _minibatch(self, X)
        with torch.no_grad():
            if not hasattr(self, "components_"):
                self._check_params()
                self._check_rows(Z.shape[0])
                self._start(Z)
                self._minibatches = True
            elif not hasattr(self, "_minibatches"):
                raise XlvlmError(f"this {type(self).__name__} was fitted by fit() or loaded; minibatches continue "
                                 "only a partial_fit run: start one on a new estimator")
            else:
                self._update(Z)
        return self

    def _start(self, Z: torch.Tensor) -> None:
        raise XlvlmError(f"{type(self).__name__} cannot learn from minibatches; call fit on the whole matrix, "
                         "or use SemiNMF, KMeans or MiniBatchKMeans")

    def _update(self, Z: torch.Tensor) -> None:
        raise NotImplementedError  # only reached after a _start that a subclass provides

    def _one_pass(self, read_pass: Callable[[], Iterable[torch.Tensor]]):
        """partial_fit on every minibatch of ``read_pass()``, then end_pass(); its result."""
        for Z in read_pass():
            self.partial_fit(Z)
        return self.end_pass()

    # ---- the dictionary view (what learn_concepts returns and save/load keeps) ----------------
    @classmethod
    def encode(cls, Z, components, state, options) -> torch.Tensor:
        """The method's encoder as a function (used by ConceptDictionary.transform)."""
        return cls.solver.encode(Z, components, state, options)

    @classmethod
    def decode(cls, A, components, state, options) -> torch.Tensor:
        """The method's decoder as a function (used by ConceptDictionary.inverse_transform)."""
        return cls.solver.decode(A, components, state, options)

    def to_dictionary(self, activations: torch.Tensor, **extra_params) -> ConceptDictionary:
        """A ConceptDictionary of the fitted concepts and the training ``activations`` (N, K)."""
        params = {"n_concepts": self.n_concepts, "seed": int(self.seed), **self.options(), **extra_params}
        return ConceptDictionary(self._fitted(), activations.contiguous(), self.name, params,
                                 dict(self.state_), dict(self.info_))

    @classmethod
    def from_dictionary(cls, cd: ConceptDictionary) -> "ConceptEstimator":
        """The fitted estimator of a (loaded) dictionary; parameters the class does not know
        (e.g. ``batch_rows`` of a streamed fit) are left out."""
        estimator = cls(**{k: v for k, v in cd.params.items() if k in cls._param_names()})
        estimator._learned(cd.components, cd.state, cd.info)
        return estimator


class SemiNMF(ConceptEstimator):
    """Semi-NMF (Ding et al.): A >= 0, D free; least-squares D, multiplicative A
    (``solvers.snmf``). Streams: ``partial_fit`` takes exact codes per minibatch and one
    least-squares step for D per pass (each iteration of ``max_iter``/``tol`` is a pass)."""

    name, summary, solver = "snmf", "semi-NMF (Ding et al.): U >= 0, V free; least-squares V, multiplicative U", snmf
    stream_ignores = ("inner", "init_offset")  # multiplicative steps: in memory only

    def __init__(self, n_concepts: int = 20, l1: float = 0.0, max_iter: int = 500, tol: float = 1e-4,
                 inner: int = 10, init_offset: float = 0.05, kmeans_iter: int = 50, init_rows: int = 2048,
                 init_runs: int = 3, seed: int = 0, device: str | None = None):
        self.n_concepts, self.l1, self.max_iter, self.tol = n_concepts, l1, max_iter, tol
        self.inner, self.init_offset, self.kmeans_iter = inner, init_offset, kmeans_iter
        self.init_rows, self.init_runs, self.seed, self.device = init_rows, init_runs, seed, device

    def _start(self, Z: torch.Tensor) -> None:
        """D from k-means on Z's rows; the penalty's scale from them too (every end_pass() sets
        it from the whole pass)."""
        V = snmf.start_components(Z, self.n_concepts, self._generator(Z.device), self.kmeans_iter, self.init_rows,
                                  self.init_runs)
        scale = torch.linalg.vector_norm(Z, dim=1).square().mean().sqrt()
        self._learned(V, {"feature_scale": scale}, {"n_iter": 0})
        self._pass = snmf.pass_sums(self.n_concepts, Z.shape[1], Z.device)

    def _update(self, Z: torch.Tensor) -> None:
        snmf.add_to_pass(self._pass, Z, self.components_, self._penalty())

    def _penalty(self) -> float:
        return self.l1 * float(self.state_["feature_scale"])

    def end_pass(self) -> float:
        """Take the least-squares step for D from this pass's minibatches; returns the pass's
        objective 0.5 ||Z - A D||^2 + lambda sum(A) (for the D they were coded with)."""
        sums = getattr(self, "_pass", None)
        if not sums or not sums["rows"]:
            raise XlvlmError("end_pass() without a minibatch in the pass; call partial_fit(Z_b) first")
        penalty = self._penalty()
        V, objective = snmf.finish_pass(sums, self.components_, penalty)
        scale = torch.tensor((sums["sq_norm"] / sums["rows"]) ** 0.5, dtype=V.dtype, device=V.device)
        info = {"n_iter": self.n_iter_ + 1, "objective": objective, "l1_penalty": penalty}
        self._learned(V, {"feature_scale": scale}, info)
        self._pass = snmf.pass_sums(V.shape[0], V.shape[1], V.device)
        return objective

    def fit_passes(self, read_pass: Callable[[], Iterable[torch.Tensor]]) -> "SemiNMF":
        """Passes over ``read_pass()``'s minibatches until the objective's relative decrease is
        under ``tol`` or after ``max_iter`` passes (after a first partial_fit)."""
        info = until_converged(lambda: self._one_pass(read_pass), self.max_iter, self.tol)
        self.info_ = {**self.info_, **info}
        return self


class NNDL(ConceptEstimator):
    """Sparse non-negative dictionary learning, scikit-learn's DictionaryLearning(positive_code=True)
    objective (``solvers.nndl``)."""

    name, solver = "nndl", nndl
    summary = "sparse non-negative dictionary learning (sklearn DictionaryLearning(positive_code=True) objective)"

    def __init__(self, n_concepts: int = 20, alpha: float = 1.0, max_iter: int = 200, tol: float = 1e-6,
                 code_iter: int = 1000, kmeans_iter: int = 50, init_rows: int = 2048, init_runs: int = 3,
                 seed: int = 0, device: str | None = None):
        self.n_concepts, self.alpha, self.max_iter, self.tol, self.code_iter = n_concepts, alpha, max_iter, tol, code_iter
        self.kmeans_iter, self.init_rows, self.init_runs = kmeans_iter, init_rows, init_runs
        self.seed, self.device = seed, device


class NMF(ConceptEstimator):
    """NMF by HALS, for non-negative features only (``solvers.nmf``)."""

    name, summary, solver = "nmf", "NMF by HALS, for non-negative features only", nmf

    def __init__(self, n_concepts: int = 20, max_iter: int = 500, tol: float = 1e-5, kmeans_iter: int = 50,
                 init_rows: int = 2048, init_runs: int = 3, seed: int = 0, device: str | None = None):
        self.n_concepts, self.max_iter, self.tol, self.kmeans_iter = n_concepts, max_iter, tol, kmeans_iter
        self.init_rows, self.init_runs, self.seed, self.device = init_rows, init_runs, seed, device


class _KMeansUpdates(ConceptEstimator):
    """k-means' encoder (activations 1 / (1 + distance)) and its minibatch updates (Sculley):
    ``partial_fit`` starts from Lloyd on the first call's rows, then takes one step per call."""

    solver = kmeans

    def _start(self, Z: torch.Tensor) -> None:
        """Centroids from the best of n_init k-means++/Lloyd runs on Z's rows."""
        C = kmeans.lloyd(Z, self.n_concepts, self._generator(Z.device), self.max_iter, self.n_init)[0]
        self._learned(C, {}, {"n_iter": 0})
        self._counts = torch.zeros(self.n_concepts, dtype=torch.float64, device=Z.device)
        self._given = torch.zeros_like(self._counts)

    def _update(self, Z: torch.Tensor) -> None:
        self.components_, given = kmeans.minibatch_step(Z, self.components_, self._counts)
        self._given += given
        self._last = Z

    def end_pass(self) -> None:
        """Move each centroid that got no row this pass onto the farthest row of its last minibatch."""
        if not hasattr(self, "_last"):
            raise XlvlmError("end_pass() without a minibatch in the pass; call partial_fit(Z_b) first")
        kmeans.revive_dead(self.components_, self._counts, self._given, self._last)
        del self._last  # not held while the next pass reads its first minibatch (memory bound)
        self._given.zero_()
        self.n_iter_ += 1
        self.info_ = {**self.info_, "n_iter": self.n_iter_}


class KMeans(_KMeansUpdates):
    """k-means++ then Lloyd, best of ``n_init`` starts (``solvers.kmeans``); ``partial_fit``
    does mini-batch steps (see MiniBatchKMeans)."""

    name, summary = "kmeans", "k-means++ then Lloyd; activations 1/(1 + distance to each centroid)"

    def __init__(self, n_concepts: int = 20, max_iter: int = 100, n_init: int = 3, seed: int = 0,
                 device: str | None = None):
        self.n_concepts, self.max_iter, self.n_init, self.seed, self.device = n_concepts, max_iter, n_init, seed, device


class MiniBatchKMeans(_KMeansUpdates):
    """Mini-batch k-means (Sculley 2010): the best of ``n_init`` k-means++/Lloyd runs (at most
    ``max_iter`` iterations) on ``init_rows`` sampled rows, then ``epochs`` passes of minibatch
    steps over all rows in a new random order each (``solvers.kmeans``)."""

    name, summary = "minibatch-kmeans", "mini-batch k-means (Sculley): Lloyd on a sample, then minibatch passes"
    stream_ignores = ("batch_size",)  # a store's minibatches are batch_rows rows

    def __init__(self, n_concepts: int = 20, batch_size: int = 1024, epochs: int = 3, init_rows: int = 4096,
                 n_init: int = 3, max_iter: int = 100, seed: int = 0, device: str | None = None):
        self.n_concepts, self.batch_size, self.epochs, self.init_rows = n_concepts, batch_size, epochs, init_rows
        self.n_init, self.max_iter, self.seed, self.device = n_init, max_iter, seed, device

    def _fit(self, Z: torch.Tensor, generator: torch.Generator):
        n = Z.shape[0]
        start = torch.randperm(n, generator=generator, device=Z.device)[:max(self.init_rows, self.n_concepts)]
        self.partial_fit(Z[start.sort().values])
        batch = max(1, int(self.batch_size))

        def read_pass():
            order = torch.randperm(n, generator=generator, device=Z.device)
            return (Z[order[first:first + batch]] for first in range(0, n, batch))

        self.fit_passes(read_pass)
        closest = kmeans.squared_distances(Z, self.components_).min(1).values
        info = {"n_iter": self.n_iter_, "inertia": float(closest.double().sum())}
        return self.components_, self.solver.encode(Z, self.components_, {}, {}), {}, info

    def fit_passes(self, read_pass: Callable[[], Iterable[torch.Tensor]]) -> "MiniBatchKMeans":
        """``epochs`` passes over ``read_pass()``'s minibatches (after a first partial_fit)."""
        for _ in range(self.epochs):
            self._one_pass(read_pass)
        return self


class PCA(ConceptEstimator):
    """The top-K principal directions; activations are projections (``solvers.pca``)."""

    name, summary, solver = "pca", "top-K principal directions; activations = projections", pca

    def __init__(self, n_concepts: int = 20, power_iter: int = 7, seed: int = 0, device: str | None = None):
        self.n_concepts, self.power_iter, self.seed, self.device = n_concepts, power_iter, seed, device


class TopKSAE(ConceptEstimator):
    """TopK sparse autoencoder; components are its decoder rows (``solvers.sae``)."""

    name, solver = "topk-sae", sae
    summary = "TopK sparse autoencoder; components = decoder rows, activations = TopK encoder output"

    def __init__(self, n_concepts: int = 20, k_active: int | None = None, steps: int = 1000,
                 batch_size: int = 256, lr: float = 1e-3, seed: int = 0, device: str | None = None):
        self.n_concepts, self.k_active, self.steps, self.batch_size, self.lr = n_concepts, k_active, steps, batch_size, lr
        self.seed, self.device = seed, device


class Simple(ConceptEstimator):
    """The K largest-norm samples as directions (``simple``); activations are projections on
    the unit rows, or 1/(1 + distance) to the raw rows with ``activation="distance"`` (the
    research code's)."""

    name, summary, solver = "simple", simple.METHOD.summary, simple

    def __init__(self, n_concepts: int = 20, activation: str = "projection", seed: int = 0,
                 device: str | None = None):
        self.n_concepts, self.activation, self.seed, self.device = n_concepts, activation, seed, device

    def _fit(self, Z: torch.Tensor, generator: torch.Generator):
        fitted = simple.fit(Z, self.n_concepts, generator, **self.options())
        return fitted.components, fitted.activations, fitted.state, fitted.info


def _minibatch(estimator: ConceptEstimator, X) -> torch.Tensor:
    """X (B, D) as float32 on the estimator's device (its components' once fitted), width checked."""
    if hasattr(estimator, "components_"):
        Z = as_features(X, device=estimator.components_.device)
        if Z.shape[1] != estimator.components_.shape[1]:
            raise XlvlmError(f"minibatch has {Z.shape[1]} features, the first had {estimator.components_.shape[1]}")
        return Z
    return as_features(X, device=estimator.device)


ESTIMATORS: tuple[type[ConceptEstimator], ...] = (SemiNMF, NNDL, KMeans, PCA, NMF, Simple, TopKSAE, MiniBatchKMeans)
for _cls in ESTIMATORS:
    register(_cls)
