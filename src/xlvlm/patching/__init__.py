"""Activation patching and causal tracing: where a VLM reads the answer from the image.

Run a clean and a corrupted prompt, copy the clean states into the corrupted run at one site
(layer) and one cell (a group of token positions) at a time, and measure how much of the
answer comes back (recovery: 0 is the corrupted run, 1 the clean one).

>>> pairs = make_pairs(clean_samples, corrupted_samples)     # matched by id
>>> result = patch(vlm, pairs, positions="groups")           # exact, batched
>>> quick = attribute(vlm, pairs, positions="groups")        # first-order estimate
>>> result.recovery(0)                                        # (sites, cells)

Pairs without a corrupted sample (``make_pairs(clean)``) are causal tracing: the corrupted run
adds seeded Gaussian noise to the image tokens' embeddings. See docs/patching.md.
"""

from xlvlm.lazy import lazy_exports

# public name -> the module that defines it, imported on first use: the command line reads
# xlvlm.patching.registry without paying for torch
_EXPORTS = {
    "Pair": "xlvlm.patching.pairs",
    "PairResult": "xlvlm.patching.result",
    "PatchResult": "xlvlm.patching.result",
    "attribute": "xlvlm.patching.attribution",
    "make_pairs": "xlvlm.patching.pairs",
    "patch": "xlvlm.patching.exact",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
