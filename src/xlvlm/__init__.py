"""xlvlm: explain and steer vision-language models.

Concepts (CoX-LMM), fine-tuning shift analysis and steering vectors for multimodal LLMs from
Hugging Face transformers. See README.md and docs/.
"""

from xlvlm.errors import XlvlmError
from xlvlm.extract import FeatureStore, extract
from xlvlm.models import load_vlm

__version__ = "0.1.0"

__all__ = ["XlvlmError", "FeatureStore", "extract", "load_vlm", "__version__"]
