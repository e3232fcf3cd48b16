"""Concept dictionaries: decompose recorded features Z (N, D) ~= U (N, K) V (K, D), then
ground and measure the concepts. The decomposition methods, image grounding (MAS) and the
metrics here need no model.

    cd = learn_concepts(Z, method="snmf", n_concepts=20)   # .components (K, D), .activations (N, K)
    est = SemiNMF(n_concepts=20).fit(Z)                     # the same as an estimator: .components_
    mas = ground_images(cd.activations, store.samples)     # K lists of sample indices
    sae = load_sae("gemma-scope-2-4b-it/resid_post/layer_17_width_16k_l0_medium")  # a pretrained SAE
"""

from xlvlm.concepts.dictionary import ConceptDictionary
from xlvlm.concepts.images import ground_images
from xlvlm.concepts.estimators import NMF, NNDL, PCA, KMeans, MiniBatchKMeans, PretrainedSAE, SemiNMF, Simple, TopKSAE
from xlvlm.concepts.learn import learn_concepts, learn_concepts_streaming
from xlvlm.concepts.metrics import dead_concepts, overlap, reconstruction_r2, sparsity
from xlvlm.concepts.registry import METHODS
from xlvlm.concepts.sae_files import load_sae, save_sae

__all__ = [
    "NMF",
    "NNDL",
    "PCA",
    "ConceptDictionary",
    "PretrainedSAE",
    "KMeans",
    "MiniBatchKMeans",
    "SemiNMF",
    "Simple",
    "TopKSAE",
    "learn_concepts_streaming",
    "METHODS",
    "dead_concepts",
    "ground_images",
    "learn_concepts",
    "load_sae",
    "overlap",
    "reconstruction_r2",
    "save_sae",
    "sparsity",
]
