"""Samples: plain dicts ``{"id", "image", "prompt", ...}`` read from any supported source.

``load_samples(spec, **options)`` picks the reader from ``spec``:

=====================  ===============================================  =========================
spec                   reader                                           options
=====================  ===============================================  =========================
``PATH.jsonl``         :func:`read_jsonl` (one sample per line)         none
``easyvqa:train``      :func:`read_easyvqa` (PyPI ``easy-vqa``)         prompt
``easyvqa:test``
``coco:KARPATHY.json`` :func:`read_coco_karpathy`                       image_root, split, prompt
``vqav2:QUESTIONS``    :func:`read_vqav2`                               annotations, image_root,
                                                                        split, prompt
``pope:FILE|FOLDER``   :func:`read_pope` (POPE yes/no questions)        image_root, split, prompt
``mmsafety:FOLDER``    :func:`read_mmsafety` (MM-SafetyBench)           image_type, prompt
``hf:SOURCE[:split]``  :func:`read_hf` (Hugging Face ``datasets``: parquet, columns, preset,
                       arrow, save_to_disk folders, hub names)          prompt, image_root,
                                                                        streaming
a folder               :func:`read_folder` (every image, one prompt)    prompt, recursive
=====================  ===============================================  =========================

Options given as ``None`` are ignored (so a CLI can pass its unset flags through).
:func:`select_subset` narrows samples; :func:`check_images` opens every image once.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from xlvlm.data.coco import read_coco_karpathy
from xlvlm.data.easyvqa import read_easyvqa
from xlvlm.data.folder import read_folder
from xlvlm.data.hf import read_hf
from xlvlm.data.images import EncodedImage, image_label, load_image
from xlvlm.data.samples import check_samples
from xlvlm.data.jsonl import read_jsonl, write_jsonl
from xlvlm.data.mmsafety import read_mmsafety
from xlvlm.data.pope import read_pope
from xlvlm.data.subsets import select_subset
from xlvlm.data.vqav2 import read_vqav2
from xlvlm.data.wordlists import load_word_class, shipped_word_classes
from xlvlm.errors import XlvlmError

__all__ = [
    "load_samples", "select_subset", "check_images", "check_samples", "image_label", "read_jsonl", "write_jsonl", "read_coco_karpathy",
    "read_vqav2", "read_easyvqa", "read_folder", "load_image", "load_word_class", "shipped_word_classes",
    "read_pope", "read_mmsafety", "read_hf",
]

_OPTIONS = {
    "jsonl": (),
    "easyvqa": ("prompt",),
    "coco": ("image_root", "split", "prompt"),
    "vqav2": ("annotations", "image_root", "split", "prompt"),
    "folder": ("prompt", "recursive"),
    "pope": ("image_root", "split", "prompt"),
    "mmsafety": ("image_type", "prompt"),
    "hf": ("columns", "preset", "prompt", "image_root", "streaming"),
}


def _check_options(kind: str, options: dict) -> dict:
    options = {k: v for k, v in options.items() if v is not None}
    for name in options:
        if name not in _OPTIONS[kind]:
            allowed = ", ".join(_OPTIONS[kind]) or "no options"
            raise XlvlmError(f"option {name!r} does not apply to {kind} data (it takes {allowed})")
    return options


def load_samples(spec: str | Path, **options) -> list[dict]:
    """Read samples from ``spec`` (see the module docstring for the forms and options)."""
    text = str(spec)
    prefix, _, rest = text.partition(":")
    if prefix == "easyvqa":
        return read_easyvqa(rest, **_check_options("easyvqa", options))
    if prefix == "coco" and rest:
        return read_coco_karpathy(rest, **_check_options("coco", options))
    if prefix == "vqav2" and rest:
        return read_vqav2(rest, **_check_options("vqav2", options))
    if prefix == "pope" and rest:
        return read_pope(rest, **_check_options("pope", options))
    if prefix == "mmsafety" and rest:
        return read_mmsafety(rest, **_check_options("mmsafety", options))
    if prefix == "hf" and rest:
        return read_hf(rest, **_check_options("hf", options))
    path = Path(text).expanduser()
    if path.suffix.lower() == ".jsonl":
        _check_options("jsonl", options)
        return read_jsonl(path)
    if path.is_dir():
        return read_folder(path, **_check_options("folder", options))
    if not path.exists():
        raise XlvlmError(f"{text}: data not found; give a .jsonl file, an image folder, easyvqa:train|test, coco:KARPATHY.json, vqav2:QUESTIONS.json, pope:FILE, mmsafety:FOLDER or hf:DATASET")
    raise XlvlmError(f"{text}: unknown data format; give a .jsonl file, an image folder, or prefix it with coco:, vqav2:, pope:, mmsafety: or hf: (parquet, arrow)")


def check_images(samples: list[dict], skip_bad: bool = False) -> tuple[list[dict], list[dict]]:
    """Open every sample's image (each file once) and sort out the unreadable ones.

    Returns ``(good_samples, skipped)`` where ``skipped`` lists ``{"id", "image", "reason"}``
    for each sample whose image is missing or corrupt. Without ``skip_bad`` the first bad
    image raises its one-line :class:`XlvlmError` instead.
    """
    problems: dict[str, str | None] = {}
    good, skipped = [], []
    for sample in samples:
        image = sample.get("image")
        if isinstance(image, (Image.Image, EncodedImage)):  # in memory, or one per dataset row
            try:
                load_image(image)
                reason = None
            except XlvlmError as exc:
                reason = str(exc)
        elif not isinstance(image, str) or not image:
            reason = f"sample {sample.get('id')!r}: missing 'image' field; give each sample an image path"
        else:
            if image not in problems:
                try:
                    load_image(image)
                    problems[image] = None
                except XlvlmError as exc:
                    problems[image] = str(exc)
            reason = problems[image]
        if reason is None:
            good.append(sample)
        elif skip_bad:
            skipped.append({"id": sample.get("id"), "image": image_label(image), "reason": reason})
        else:
            raise XlvlmError(reason)
    return good, skipped
