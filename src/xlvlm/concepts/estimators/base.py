"""The shared behaviour of the concept estimators: scikit-learn parameters and checks,
fit/transform, and the dictionary view (see :mod:`xlvlm.concepts.estimators`)."""

from __future__ import annotations

import inspect
import json
import numbers
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import validate_data

from xlvlm.concepts._validate import InputError, NotFitted, as_features
from xlvlm.concepts.dictionary import ConceptDictionary
from xlvlm.concepts.registry import registered_name

# Parameters every estimator has that are not the method's own options; the scikit-learn
# names n_components and random_state, when not None, stand for n_concepts and seed.
_NOT_OPTIONS = ("n_concepts", "seed", "device", "n_components", "random_state")


class ConceptEstimator(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """The shared behaviour; subclasses name their parameters in ``__init__`` and their solver.

    A scikit-learn transformer: ``clone``, ``Pipeline``, ``GridSearchCV`` (``score`` is the
    reconstruction R^2) and ``set_output`` work. Array in, same kind out: numpy (or anything
    array-like) in gives numpy out, a torch tensor in gives a tensor on its device out; the
    work runs in float32 on ``device`` (default: the input's device).

    ``defaults`` (class attribute): the method's own options and their defaults, i.e. every
    ``__init__`` parameter except n_concepts, seed, device, n_components and random_state.
    ``name`` (class attribute): the class's name in :data:`xlvlm.concepts.registry.METHODS` (or
    ``LOADED``), set when the class is made; a subclass registered under no name keeps its own
    ``name`` or its parent's.

    An estimator of given tensors (e.g. a pretrained SAE's encoder and decoder) is a subclass
    whose solver module has ``encode``/``decode``; ``from_dictionary`` (or ``_learned`` plus
    ``n_features_in_``) makes it fitted, and transform, inverse_transform, score and
    components_ then work as for a learned one.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    solver: ClassVar[Any]  # a module with encode(Z, components, state, options) and decode(...)
    defaults: ClassVar[dict[str, Any]]
    stream_ignores: ClassVar[tuple[str, ...]] = ()  # options a streaming fit does not read
    run_state: ClassVar[tuple[str, ...]] = ()  # private attributes of a minibatch run (forgotten by a new fit)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.name = registered_name(cls) or getattr(cls, "name", None)
        parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
        cls.defaults = {p.name: p.default for p in parameters if p.name not in _NOT_OPTIONS}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]  # the work runs in float32
        return tags

    # ---- parameters ----------------------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        return list(inspect.signature(cls.__init__).parameters)[1:]

    def set_params(self, **params) -> "ConceptEstimator":
        """Change parameters (takes effect at the next fit); returns self."""
        unknown = sorted(set(params) - set(self._param_names()))
        if unknown:
            raise InputError(f"unknown option(s) {', '.join(unknown)} for method {self.name!r}; "
                             f"its options are: {', '.join(self.defaults) or 'none'}")
        return super().set_params(**params)

    def options(self) -> dict[str, Any]:
        """The method's own options (``defaults``' keys) with their current values."""
        return {name: getattr(self, name) for name in self.defaults}

    def concepts_count(self) -> int:
        """K: ``n_components`` when given, else ``n_concepts``."""
        return self.n_concepts if self.n_components is None else self.n_components

    def _seed(self) -> int:
        """The seed of this fit: ``random_state`` when given (an int, or a draw from a
        numpy RandomState), else ``seed``; fixed for the fit at its first use."""
        if "_run_seed" not in self.__dict__:
            state = self.random_state
            if state is None:
                self._run_seed = int(self.seed)
            elif isinstance(state, numbers.Integral):
                self._run_seed = int(state)
            else:
                self._run_seed = int(check_random_state(state).randint(np.iinfo(np.int32).max))
        return self._run_seed

    def _check_params(self) -> None:
        k = self.concepts_count()
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise InputError(f"n_concepts (or n_components) must be a positive integer, got {k!r}")
        try:
            json.dumps({"seed": self._seed(), **self.options()}, allow_nan=False)
        except (TypeError, ValueError):
            raise InputError(f"options for {self.name!r} must be plain numbers, strings or None, "
                             f"got {self.options()!r}") from None

    def _check_rows(self, n_rows: int) -> None:
        if self.concepts_count() > n_rows:
            raise InputError(f"n_concepts={self.concepts_count()} is more than the {n_rows} samples in X; "
                             f"ask for at most {n_rows} concepts or give more samples")

    def _generator(self, device: torch.device) -> torch.Generator:
        """The seeded generator of this fit on ``device`` (one per device, made on first use)."""
        generators = self.__dict__.setdefault("_generators", {})
        key = str(torch.device(device))
        if key not in generators:
            generators[key] = torch.Generator(device=device).manual_seed(self._seed())
        return generators[key]

    def _reset(self) -> None:
        """Forget what a previous fit learned and its run state (attributes scikit-learn sets,
        e.g. set_output's or a Pipeline's, stay)."""
        own = ("_generators", "_run_seed", "_minibatches", *self.run_state)
        for name in [n for n in vars(self) if (n.endswith("_") and not n.startswith("_")) or n in own]:
            delattr(self, name)

    # ---- input and output ----------------------------------------------------------------------
    def _rows(self, X, reset: bool, device=None) -> torch.Tensor:
        """X (N, D) as checked float32 rows on ``device`` (X's own by default); ``reset``
        records its width (and column names), otherwise they must match the fit's."""
        Z = as_features(X, device=device)
        try:
            validate_data(self, X, reset=reset, skip_check_array=True)
        except ValueError as exc:
            raise InputError(f"{exc}; use features from the same layer and model") from None
        return Z

    def _begin(self, X) -> torch.Tensor:
        """A new fit on X (N, D): forget the last one, check parameters and rows -> Z (N, D)."""
        self._reset()
        self._check_params()
        Z = self._rows(X, reset=True, device=self.device)
        self._check_rows(Z.shape[0])
        return Z

    @staticmethod
    def _like(X, result: torch.Tensor):
        """``result`` as the kind of array X is: a tensor on X's device, or numpy."""
        if isinstance(X, torch.Tensor):
            return result.to(X.device)
        return result.cpu().numpy()

    # ---- fitting and using -------------------------------------------------------------------
    def fit(self, X, y=None) -> "ConceptEstimator":
        """Learn the concepts of X (N, D) (torch, numpy or array-like, any real dtype); returns self."""
        self.fit_transform(X)
        return self

    def fit_transform(self, X, y=None):
        """Learn from X (N, D) and return its activations (N, K), float32 (= ``transform(X)``,
        up to the solver's tolerance for the iterative methods), as the kind of array X is."""
        Z = self._begin(X)
        with torch.no_grad():
            components, activations, state, info = self._fit(Z, self._generator(Z.device))
        self._learned(components, state, info)
        return self._like(X, activations.contiguous())

    def _fit(self, Z: torch.Tensor, generator: torch.Generator):
        """-> (components (K, D), activations (N, K), state, info), from the solver."""
        return self.solver.fit(Z, self.concepts_count(), generator, **self.options())

    def _learned(self, components: torch.Tensor, state: dict, info: dict) -> None:
        # Contiguous row-major tensors: matmul kernels pick their path by layout, so a dictionary
        # and its saved-and-loaded copy then transform to bit-identical codes.
        self.components_ = components.contiguous()
        self.state_ = {name: t.contiguous() for name, t in state.items()}
        self.info_ = info
        self.n_iter_ = info.get("n_iter")

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "components_")

    @property
    def _n_features_out(self) -> int:
        return self._fitted().shape[0]

    def _fitted(self) -> torch.Tensor:
        if not hasattr(self, "components_"):
            raise NotFitted(f"this {type(self).__name__} is not fitted yet; call fit(X) first")
        return self.components_

    def transform(self, X):
        """Codes of rows X (N', D) with the components fixed -> (N', K), float32, as X's kind."""
        components = self._fitted()
        Z = self._rows(X, reset=False, device=components.device)
        with torch.no_grad():
            return self._like(X, self.solver.encode(Z, components, self.state_, self.options()))

    def inverse_transform(self, X):
        """Reconstruction in feature space: activations X (N', K) -> (N', D), float32, as X's kind."""
        components = self._fitted()
        codes = as_features(X, device=components.device, name="activations")
        if codes.shape[1] != components.shape[0]:
            raise InputError(f"activations have {codes.shape[1]} columns; there are {components.shape[0]} concepts")
        with torch.no_grad():
            return self._like(X, self.solver.decode(codes, components, self.state_, self.options()))

    def score(self, X, y=None) -> float:
        """Reconstruction R^2 of rows X (N', D): 1 - ||Z - Z_hat||^2 / ||Z - mean(Z)||^2, with
        Z_hat = inverse_transform(transform(Z)); higher is better (GridSearchCV's default)."""
        components = self._fitted()
        Z = self._rows(X, reset=False, device=components.device)
        with torch.no_grad():
            Z_hat = self.solver.decode(self.solver.encode(Z, components, self.state_, self.options()), components,
                                       self.state_, self.options())
        Z64 = Z.double()
        total = float((Z64 - Z64.mean(0)).square().sum())
        return 1.0 - float((Z64 - Z_hat.double()).square().sum()) / max(total, 1e-300)

    # ---- the dictionary view (what learn_concepts returns and save/load keeps) ----------------
    @classmethod
    def encode(cls, Z, components, state, options) -> torch.Tensor:
        """The method's encoder as a function (used by ConceptDictionary.transform)."""
        return cls.solver.encode(Z, components, state, options)

    @classmethod
    def decode(cls, U, components, state, options) -> torch.Tensor:
        """The method's decoder as a function (used by ConceptDictionary.inverse_transform)."""
        return cls.solver.decode(U, components, state, options)

    def to_dictionary(self, activations, **extra_params) -> ConceptDictionary:
        """A ConceptDictionary of the fitted concepts and the training ``activations`` (N, K)."""
        components = self._fitted()
        params = {"n_concepts": int(components.shape[0]), "seed": self._seed(), **self.options(), **extra_params}
        U = as_features(activations, device=components.device, name="activations")
        return ConceptDictionary(components, U.contiguous(), self.name, params, dict(self.state_), dict(self.info_))

    @classmethod
    def from_dictionary(cls, cd: ConceptDictionary) -> "ConceptEstimator":
        """The fitted estimator of a (loaded) dictionary; parameters the class does not know
        (e.g. ``batch_rows`` of a streamed fit) are left out."""
        estimator = cls(**{k: v for k, v in cd.params.items() if k in cls._param_names()})
        estimator._learned(cd.components, cd.state, cd.info)
        estimator.n_features_in_ = cd.n_features
        return estimator
