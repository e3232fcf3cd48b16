"""The names each registry accepts, as tuples read from the registries themselves (a front door
for code written against this module; new code reads ``xlvlm.<package>.registry``). Light to
import: the registries name their objects without importing them.
"""

from xlvlm.concepts import registry as _concepts
from xlvlm.evaluation.tasks import TASKS as _TASKS
from xlvlm.patching import registry as _patching
from xlvlm.shift import registry as _shift
from xlvlm.steer import registry as _steer
from xlvlm.steer.settings import MAX_ALPHA

CONCEPT_METHODS = tuple(_concepts.METHODS)
STEER_METHODS = tuple(_steer.METHODS)
CONDITION_METHODS = _steer.CONDITION_METHODS
OPERATORS = tuple(_steer.OPERATORS)
POSITION_RULES = _steer.POSITION_RULES
SHIFT_ASSIGNMENTS = _shift.ASSIGNMENTS
SHIFT_AGGREGATES = _shift.AGGREGATES
SHIFT_MAS_RANKINGS = _shift.MAS_RANKINGS
WORD_FILTERS = _concepts.WORD_FILTERS
SIMPLE_ACTIVATIONS = _concepts.SIMPLE_ACTIVATIONS
PATCH_METHODS = tuple(_patching.METHODS)
PATCH_METRICS = _patching.METRICS
EVALUATION_TASKS = tuple(_TASKS)

__all__ = ["CONCEPT_METHODS", "STEER_METHODS", "CONDITION_METHODS", "OPERATORS", "POSITION_RULES",
           "SHIFT_ASSIGNMENTS", "SHIFT_AGGREGATES", "SHIFT_MAS_RANKINGS", "WORD_FILTERS", "SIMPLE_ACTIVATIONS",
           "PATCH_METHODS", "PATCH_METRICS", "EVALUATION_TASKS", "MAX_ALPHA"]
