"""The decomposition solvers: plain functions over float32 tensors, no estimator state.

Notation: ``xlvlm.concepts``'s (Z (N, D) features, U (N, K) codes, V (K, D) components).

Each solver module provides ``encode(Z, components, state, options) -> U`` and
``decode(U, components, state, options) -> Z_hat`` (what a saved ConceptDictionary uses to
transform), and its fitting functions. ``common`` holds the pieces they share: the one ridge
solve of the (K, K) normal equations and the one convergence loop.
"""
