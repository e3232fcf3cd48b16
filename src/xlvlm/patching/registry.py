"""The names ``xlvlm.patching`` offers, each written once here: the methods (exact patching,
or its first-order attribution estimate) and the metrics a run recovers
(:mod:`xlvlm.patching.metric`). Light to import: the command line reads its choices here, and a
method's function is imported when it is looked up.
"""

from xlvlm.lazy import Registry

#: name -> the function that runs the method on (vlm, pairs, ...) and returns a PatchResult.
METHODS = Registry({
    "exact": "xlvlm.patching.exact:patch",
    "attribution": "xlvlm.patching.attribution:attribute",
})
METRICS = ("logit-diff", "prob")
