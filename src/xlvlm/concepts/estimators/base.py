"""The shared behaviour of the concept estimators: parameters, fit/transform, minibatches,
and the dictionary view (see :mod:`xlvlm.concepts.estimators`)."""

from __future__ import annotations

import inspect
import json
from typing import Any, Callable, ClassVar, Iterable

import torch

from xlvlm.concepts._validate import as_features
from xlvlm.concepts.dictionary import ConceptDictionary
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


def _minibatch(estimator: ConceptEstimator, X) -> torch.Tensor:
    """X (B, D) as float32 on the estimator's device (its components' once fitted), width checked."""
    if hasattr(estimator, "components_"):
        Z = as_features(X, device=estimator.components_.device)
        if Z.shape[1] != estimator.components_.shape[1]:
            raise XlvlmError(f"minibatch has {Z.shape[1]} features, the first had {estimator.components_.shape[1]}")
        return Z
    return as_features(X, device=estimator.device)
