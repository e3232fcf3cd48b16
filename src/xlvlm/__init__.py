"""xlvlm: explain and steer vision-language models.

Concepts (CoX-LMM), fine-tuning shift analysis and steering vectors for multimodal LLMs from
Hugging Face transformers. See README.md and docs/.
"""

from xlvlm import organism
from xlvlm.concepts import ConceptDictionary, ground_images, learn_concepts
from xlvlm.concepts.text import ground_text
from xlvlm.errors import XlvlmError
from xlvlm.extract import FeatureStore, extract
from xlvlm.models import load_vlm
from xlvlm.shift import analyse_shift
from xlvlm.steer import Condition, SteeringVector

__version__ = "0.1.0"

__all__ = ["XlvlmError", "FeatureStore", "extract", "load_vlm", "learn_concepts", "ConceptDictionary", "ground_text",
           "ground_images", "analyse_shift", "SteeringVector", "Condition", "organism", "__version__"]
