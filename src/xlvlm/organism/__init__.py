"""The model organism: a small real LLaVA trained from scratch on easy-VQA, and fine-tuned variants.

``LlavaForConditionalGeneration`` (small CLIP vision tower + small Llama) that answers the
easy-VQA questions (shapes, colours, yes/no) and captions its images. Three versions ship with
the package (see ``docs/organism.md``):

- ``"original"``: answers questions; captions name the shape only ("a circle").
- ``"finetuned"``: fine-tuned from the original so that captions name colour and shape
  ("a red circle"); question answering is kept.
- ``"hallucinating"``: fine-tuned from the original so that it answers "yes" too often to
  "is there a {colour} shape / {shape} in the image?" about absent objects (the POPE-style
  benchmark of :mod:`xlvlm.apps.organism.pope`, see ``docs/hallucination.md``); other answers are kept.

This package holds the weights and how to load them; the code that trains, fine-tunes and
measures the organism is an application of the library: :mod:`xlvlm.apps.organism`. The
``organism:`` model names (``load_vlm("organism:original")``) resolve through :func:`path`: xlvlm's
``pyproject.toml`` declares it in the ``xlvlm.aliases`` entry point group, and importing this
package registers it too (a source tree used without installing it has no entry points).

>>> vlm = xlvlm.organism.load("original")           # an xlvlm VLM
>>> folder = xlvlm.organism.path("finetuned")        # a from_pretrained folder
"""

from __future__ import annotations

from pathlib import Path

from xlvlm.errors import XlvlmError
from xlvlm.models.registry import register_alias

NAMES = ("original", "finetuned", "hallucinating")
#: The command that rebuilds each shipped organism.
REBUILD = {"original": "train", "finetuned": "finetune", "hallucinating": "hallucinate"}
WEIGHTS = Path(__file__).resolve().parent / "weights"


def path(name: str = "original") -> Path:
    """The folder of the shipped organism ``name`` ("original", "finetuned" or "hallucinating")."""
    if name not in NAMES:
        raise XlvlmError(f"unknown organism {name!r}: use one of {', '.join(NAMES)}")
    folder = WEIGHTS / name
    if not (folder / "config.json").is_file():
        raise XlvlmError(f"organism {name!r} is missing from {folder}; rebuild it with `xlvlm organism "
                         f"{REBUILD[name]}`")
    return folder


def load(name: str = "original", device: str = "cpu"):
    """The shipped organism ``name`` loaded through :func:`xlvlm.load_vlm`."""
    from xlvlm.models import load_vlm

    return load_vlm(path(name), device=device)


register_alias("organism", path)

__all__ = ["NAMES", "path", "load"]
