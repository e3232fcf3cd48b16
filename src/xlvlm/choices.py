"""The names of the library's strategies whose registries live in packages that import torch.

Each of those registries takes its names from here (:data:`xlvlm.steer.vector.METHODS`,
:data:`xlvlm.concepts.METHODS`, ...), and so does the command line for its choices: ``xlvlm
--help`` then runs without importing torch or transformers. A test checks that each registry
holds exactly these names. Registries in light packages need no entry here: ``xlvlm evaluate``
reads :data:`xlvlm.evaluation.TASKS` itself.
"""

CONCEPT_METHODS = ("snmf", "nndl", "kmeans", "pca", "nmf", "simple", "topk-sae", "minibatch-kmeans")
STEER_METHODS = ("mean-diff", "mean-of-shifts", "pca", "concept")
CONDITION_METHODS = ("lda", "mean-diff")
OPERATORS = ("add", "project-out")
POSITION_RULES = ("all", "generated", "from-last-prompt")
SHIFT_ASSIGNMENTS = ("activation", "cosine", "l2")
SHIFT_AGGREGATES = ("mean", "median", "trimmed-mean")
SHIFT_MAS_RANKINGS = ("cosine", "activation")
WORD_FILTERS = ("xlvlm", "research")
SIMPLE_ACTIVATIONS = ("projection", "distance")
PATCH_METRICS = ("logit-diff", "prob")
PATCH_METHODS = ("exact", "attribution")

# Steering adds alpha times a direction to hidden states whose norms are at most a few thousand
# (large models' outlier dimensions included): beyond a million the states are swamped by the
# vector whatever its norm, and float16 (max 65504) overflows to inf long before. A bound, not
# just "finite", so that a typo such as 1e40 is refused instead of generating empty answers.
MAX_ALPHA = 1e6
