"""The names ``xlvlm.shift`` offers, each written once here: how samples are assigned to
concepts, how their shifts are aggregated, how most-activating samples are ranked and at which
scale concepts are compared (:mod:`xlvlm.shift.analysis`). Light to import: the command line reads its choices here.
"""

ASSIGNMENTS = ("activation", "cosine", "l2")
AGGREGATES = ("mean", "median", "trimmed-mean")
MAS_RANKINGS = ("cosine", "activation")
CONCEPT_SCALES = ("data", "learnt")
