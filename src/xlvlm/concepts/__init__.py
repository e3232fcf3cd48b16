"""Concept dictionaries: decompose recorded features Z (N, D) ~= U (N, K) V (K, D), then
ground and measure the concepts. The decomposition methods, image grounding (MAS) and the
metrics here need no model.

Notation, the one used by every module of ``xlvlm.concepts`` (its own, not another library's)::

    N samples, D features per sample (the layer's width), K concepts
    Z  (N, D)  features, one sample per row (the argument called X, as in scikit-learn)
    U  (N, K)  activations / codes: how much of each concept a sample holds
    V  (K, D)  components / dictionary (an estimator's ``components_``): one concept per row
    Z ~= U V   for the linear methods; method-specific encoders otherwise (k-means, TopK SAE)

    cd = learn_concepts(Z, method="snmf", n_concepts=20)   # .components (K, D), .activations (N, K)
    est = SemiNMF(n_concepts=20).fit(Z)                     # the same as an estimator: .components_
    mas = ground_images(cd.activations, store.samples)     # K lists of sample indices
    sae = load_sae("gemma-scope-2-4b-it/resid_post/layer_17_width_16k_l0_medium")  # a pretrained SAE
"""

from xlvlm.lazy import lazy_exports

# public name -> the module that defines it, imported on first use: the command line reads
# xlvlm.concepts.registry without paying for torch
_EXPORTS = {
    "ConceptDictionary": "xlvlm.concepts.dictionary",
    "ground_images": "xlvlm.concepts.grounding.images",
    **dict.fromkeys(("NMF", "NNDL", "PCA", "KMeans", "MiniBatchKMeans", "PretrainedSAE", "SemiNMF", "Simple",
                     "TopKSAE"), "xlvlm.concepts.estimators"),
    "learn_concepts": "xlvlm.concepts.learn",
    "learn_concepts_streaming": "xlvlm.concepts.learn",
    **dict.fromkeys(("dead_concepts", "overlap", "reconstruction_r2", "sparsity"), "xlvlm.concepts.metrics"),
    "METHODS": "xlvlm.concepts.registry",
    "load_sae": "xlvlm.concepts.sae_files",
    "save_sae": "xlvlm.concepts.sae_files",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
