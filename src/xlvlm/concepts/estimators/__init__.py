"""Concept estimators, scikit-learn transformers: one class per decomposition method, one
module per family (``factorization``: SemiNMF, NNDL, NMF; ``clustering``: KMeans,
MiniBatchKMeans; ``projection``: PCA, Simple; ``autoencoder``: TopKSAE) over the shared
``base.ConceptEstimator``, ``online.OnlineEstimator`` for those that learn from minibatches,
and ``streaming`` (a feature store's layer in minibatches for them).

    est = SemiNMF(n_concepts=20, l1=0.05)       # plain-value parameters; __init__ does no work
    U = est.fit_transform(Z)                     # Z (N, D) -> U (N, K); est.components_ V (K, D)
    est.transform(Z_new), est.inverse_transform(U), est.get_params(), est.set_params(l1=0.1)
    est.partial_fit(Z_b)                         # SemiNMF, KMeans, MiniBatchKMeans, TopKSAE

Notation: ``xlvlm.concepts``'s (Z features, U codes, V components). Learned attributes end in
``_``: ``components_`` (K, D), ``state_`` (extra tensors the encoder needs, e.g. the PCA
mean), ``n_iter_``, ``info_`` (fit diagnostics, JSON values), ``n_features_in_``. The math
lives in the solver modules (``xlvlm.concepts.solvers``); a class holds parameters, checks
input and keeps the learned state. ``learn_concepts`` is the front door that returns a
``ConceptDictionary``; ``to_dictionary``/``from_dictionary`` convert both ways.

Minibatches: ``partial_fit(Z_b)`` updates the model on every call (the first also starts it
from Z_b's rows), so a plain loop over minibatches learns. ``fit_passes(read_pass)`` (SemiNMF,
MiniBatchKMeans) runs the method's passes over ``read_pass()``'s minibatches after a start,
until its stopping rule: exact least-squares passes for SemiNMF, ``epochs`` passes for
MiniBatchKMeans; ``learn_concepts_streaming`` runs them over a feature store.
``end_pass()`` ends a pass of partial_fit calls (SemiNMF: the least-squares step for V over
the pass's codes; k-means: revives centroids that got no row).
"""

from __future__ import annotations

from xlvlm.concepts.estimators.autoencoder import TopKSAE
from xlvlm.concepts.estimators.base import ConceptEstimator
from xlvlm.concepts.estimators.clustering import KMeans, MiniBatchKMeans
from xlvlm.concepts.estimators.factorization import NMF, NNDL, SemiNMF
from xlvlm.concepts.estimators.pretrained import PretrainedSAE
from xlvlm.concepts.estimators.projection import PCA, Simple
from xlvlm.concepts.registry import METHODS

#: The learnt methods' classes, in METHODS' order (PretrainedSAE is loaded by load_sae, never fitted).
ESTIMATORS: tuple[type[ConceptEstimator], ...] = tuple(METHODS.values())

__all__ = ["ConceptEstimator", "ESTIMATORS", "KMeans", "MiniBatchKMeans", "NMF", "NNDL", "PCA", "PretrainedSAE",
           "SemiNMF", "Simple", "TopKSAE"]
