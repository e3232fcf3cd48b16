"""The decomposition solvers: plain functions over float32 tensors, no estimator state.

Notation shared by every module here (Overcomplete's, with its letters)::

    Z  (N, D)  features, one sample per row ("X" in scikit-learn)
    A  (N, K)  activations / codes: how much of each concept a row holds (U in older xlvlm text)
    D  (K, D)  dictionary / components: one concept direction per row (V in older xlvlm text)
    Z ~= A D   for the linear methods; method-specific encoders otherwise (k-means, TopK SAE)

Each solver module provides ``encode(Z, components, state, options) -> A`` and
``decode(A, components, state, options) -> Z_hat`` (what a saved ConceptDictionary uses to
transform), and its fitting functions. ``common`` holds the pieces they share: the one ridge
solve of the (K, K) normal equations and the one convergence loop.
"""
