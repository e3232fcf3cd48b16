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

from xlvlm.patching.attribution import attribute
from xlvlm.patching.exact import patch
from xlvlm.patching.pairs import Pair, make_pairs
from xlvlm.patching.result import PairResult, PatchResult

__all__ = ["Pair", "PairResult", "PatchResult", "attribute", "make_pairs", "patch"]
