"""Checking samples given in Python: one-line errors for the first mistakes people make.

A sample is a dict ``{"id", "image", "prompt", ...}``. In a notebook ``image`` may be a PIL
image as well as a path. Every sample needs its own ``id``: there is no generated id, because
stores, shift analysis and paired steering match samples across runs by id, and an id made
from a position would silently pair different samples once a list is filtered or reordered.
An int id is accepted and stored as its string (``3`` -> ``"3"``), the form every store keeps.
"""

from __future__ import annotations

import os
from typing import Sequence

from PIL import Image

from xlvlm.data.images import EncodedImage
from xlvlm.errors import XlvlmError

EXAMPLE = "[{'id': 'q1', 'image': 'cat.png' or a PIL image, 'prompt': 'what shape?'}]"


def _preview(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_samples(samples, need: Sequence[str] = ("image", "prompt"), where: str = "samples",
                  ids: bool = True) -> list[dict]:
    """The samples as a list of dicts, checked: each a dict with a unique string (or int) ``id``
    (only where it has one, with ``ids=False``: running a model needs no ids, storing does) and
    the fields in ``need`` (``image``: a path or a PIL image; ``prompt``: a string).
    Returns shallow copies where an id or a path was normalised to a string, the given dicts
    otherwise. Raises a one-line XlvlmError saying what to pass."""
    if isinstance(samples, (str, bytes, os.PathLike)):
        raise XlvlmError(f"{where}: got {type(samples).__name__} {_preview(samples)}; pass a list of sample dicts "
                         f"such as {EXAMPLE} (xlvlm.data.load_samples(PATH) reads a file)")
    if isinstance(samples, dict):
        raise XlvlmError(f"{where}: got one sample dict; pass a list of them: [sample]")
    if isinstance(samples, Image.Image):
        raise XlvlmError(f"{where}: got an image; pass a list of sample dicts such as {EXAMPLE}")
    try:
        samples = list(samples)
    except TypeError:
        raise XlvlmError(f"{where}: got {type(samples).__name__}; pass a list of sample dicts such as {EXAMPLE}") from None
    checked, seen = [], {}
    for i, sample in enumerate(samples):
        if not isinstance(sample, dict):
            raise XlvlmError(f"{where}[{i}] is a {type(sample).__name__} ({_preview(sample)}), not a dict; each sample "
                             f"is a dict like {EXAMPLE[1:-1]}")
        fixed = {}
        if not ids:  # only named in messages
            sample_id = str(sample.get("id", f"#{i}"))
        elif "id" not in sample:
            raise XlvlmError(f"{where}[{i}] has no 'id': give every sample a unique id (stores, shift and paired "
                             f"steering match samples by id)")
        else:
            sample_id = sample["id"]
            if isinstance(sample_id, bool) or not isinstance(sample_id, (str, int)):
                raise XlvlmError(f"{where}[{i}]: 'id' is a {type(sample_id).__name__}; use a string (or an int)")
            if not isinstance(sample_id, str):
                fixed["id"] = sample_id = str(sample_id)
            if sample_id in seen:
                raise XlvlmError(f"{where}[{i}]: id {sample_id[:80]!r} is also the id of {where}[{seen[sample_id]}]; "
                                 f"ids must be unique")
            seen[sample_id] = i
        if "image" in need:
            image = sample.get("image")
            if isinstance(image, os.PathLike):
                fixed["image"] = os.fspath(image)
            elif not isinstance(image, (str, Image.Image, EncodedImage)) or image == "":
                raise XlvlmError(f"{where}[{i}] (id {sample_id[:80]!r}): 'image' is {_preview(image)}; give a file "
                                 f"path or a PIL image")
        if "prompt" in need and not isinstance(sample.get("prompt"), str):
            raise XlvlmError(f"{where}[{i}] (id {sample_id[:80]!r}): 'prompt' is {_preview(sample.get('prompt'))}; "
                             f"give the question or instruction as a string")
        checked.append({**sample, **fixed} if fixed else sample)
    return checked
