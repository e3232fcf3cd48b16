"""xlvlm: explain and steer vision-language models.

Concepts (CoX-LMM), fine-tuning shift analysis and steering vectors for multimodal LLMs from
Hugging Face transformers. See README.md and docs/.

The public names below are imported on first use (PEP 562), so that ``import xlvlm.cli`` and
``xlvlm --help`` do not pay for torch and transformers.
"""

from __future__ import annotations

from xlvlm.lazy import lazy_exports

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
_SUBMODULES = ("choices", "concepts", "data", "errors", "evaluation", "features", "figures", "hooks", "io", "models",
               "organism", "report", "shift", "steer", "testing", "threads")

__all__ = [*_EXPORTS, *_SUBMODULES, "__version__"]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
