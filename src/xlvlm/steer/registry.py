"""The names ``xlvlm.steer`` offers, each written once here: the aggregators (how a vector is
made from rows, :mod:`xlvlm.steer.aggregators`), the operators (how it edits the residual
stream, :mod:`xlvlm.steer.operators`), the condition methods, the positions rules and the
calibration objectives.

Light to import (the command line reads its choices here): a function is imported when it is
looked up.
"""

from __future__ import annotations

from xlvlm.lazy import Registry

#: name -> aggregator function, in the order the command line lists them.
AGGREGATORS = Registry({
    "mean-diff": "xlvlm.steer.aggregators:mean_difference",
    "mean-of-shifts": "xlvlm.steer.aggregators:mean_of_shifts",
    "pca": "xlvlm.steer.aggregators:pca",
    "concept": "xlvlm.steer.aggregators:concept",
})
#: The steering methods: the names of AGGREGATORS.
METHODS = tuple(AGGREGATORS)
#: name -> operator function.
OPERATORS = Registry({
    "add": "xlvlm.steer.operators:add",
    "project-out": "xlvlm.steer.operators:project_out",
})
#: How :meth:`xlvlm.steer.condition.Condition.learn` finds its direction.
CONDITION_METHODS = ("lda", "mean-diff")
#: Which positions steering edits (:mod:`xlvlm.steer.apply`), besides a prompt index.
POSITION_RULES = ("all", "generated", "from-last-prompt")
#: What calibration maximises (:mod:`xlvlm.steer.calibrate`).
OBJECTIVES = ("pope-f1", "answer-shift")
