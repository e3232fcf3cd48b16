"""xlvlm: explain and steer vision-language models.

Concepts (CoX-LMM), fine-tuning shift analysis and steering vectors for multimodal LLMs from
Hugging Face transformers. See README.md and docs/.

The public names below are imported on first use (PEP 562), so that ``import xlvlm.cli`` and
``xlvlm --help`` do not pay for torch and transformers.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "XlvlmError": "xlvlm.errors",
    "FeatureStore": "xlvlm.features",
    "extract": "xlvlm.features",
    "load_vlm": "xlvlm.models",
    "learn_concepts": "xlvlm.concepts",
    "ConceptDictionary": "xlvlm.concepts",
    "ground_text": "xlvlm.concepts.grounding.text",
    "ground_images": "xlvlm.concepts",
    "analyse_shift": "xlvlm.shift",
    "SteeringVector": "xlvlm.steer",
    "Condition": "xlvlm.steer",
    "PerSampleSteering": "xlvlm.steer",
    "LearnedSteering": "xlvlm.steer",
    "use_safe_threads": "xlvlm.threads",
}
# documented submodules, imported on first attribute access (``xlvlm.steer.sweep`` after ``import xlvlm``)
_SUBMODULES = ("choices", "concepts", "data", "errors", "evaluation", "figures", "hooks", "io", "models",
               "organism", "report", "shift", "steer", "testing", "threads")

__all__ = [*_EXPORTS, *_SUBMODULES, "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"xlvlm.{name}")
    else:
        raise AttributeError(f"module 'xlvlm' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
