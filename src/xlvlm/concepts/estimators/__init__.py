"""Concept estimators, scikit-learn style: one class per decomposition method, one module per
family (``factorization``: SemiNMF, NNDL, NMF; ``clustering``: KMeans, MiniBatchKMeans;
``projection``: PCA, Simple; ``autoencoder``: TopKSAE) over the shared ``base.ConceptEstimator``.

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

from xlvlm.concepts.estimators.autoencoder import TopKSAE
from xlvlm.concepts.estimators.base import ConceptEstimator
from xlvlm.concepts.estimators.clustering import KMeans, MiniBatchKMeans
from xlvlm.concepts.estimators.factorization import NMF, NNDL, SemiNMF
from xlvlm.concepts.estimators.pretrained import PretrainedSAE
from xlvlm.concepts.estimators.projection import PCA, Simple
from xlvlm.concepts.registry import LOADED, register

ESTIMATORS: tuple[type[ConceptEstimator], ...] = (SemiNMF, NNDL, KMeans, PCA, NMF, Simple, TopKSAE, MiniBatchKMeans)
for _cls in ESTIMATORS:
    register(_cls)
LOADED[PretrainedSAE.name] = PretrainedSAE  # loaded by xlvlm.concepts.load_sae, never fitted

__all__ = ["ConceptEstimator", "ESTIMATORS", "KMeans", "MiniBatchKMeans", "NMF", "NNDL", "PCA", "PretrainedSAE",
           "SemiNMF", "Simple", "TopKSAE"]
