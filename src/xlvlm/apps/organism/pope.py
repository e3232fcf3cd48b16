"""A POPE-style object-existence benchmark on the easy-VQA images, for the model organism.

POPE (Li et al. 2023) asks "Is there a {object} in the image?" about objects that are in the
image (answer "yes") and objects that are not ("no"), in equal numbers, with three ways of
choosing the absent objects. An easy-VQA image holds one object: a shape of one colour, so the
"objects" here are its colour and its shape, asked in the organism's own phrasing of existence
questions (easy-VQA's words): ``"is there a red shape in the image?"`` and
``"is there a circle in the image?"``.

Per image and per split, four questions: its own colour and its own shape (label "yes"), one
absent colour and one absent shape (label "no"). The absent ones are chosen per split:

- ``random``: uniformly among the absent colours (7) / shapes (2);
- ``popular``: among the ``POPULAR_TOP`` most frequent answers of the easy-VQA training
  questions that the image lacks (colours: the 3 most frequent absent ones, drawn uniformly;
  shapes: the most frequent absent one), as POPE takes the most frequent COCO objects;
- ``adversarial``: the absent colour / shape most often confused with the present one: the one
  to which the original organism gives the highest mean probability when asked the colour
  ("what color is the shape?") or shape ("what shape is in the image?") of training images of
  the present one (:func:`confusions`), as POPE takes the objects that co-occur most.

The positives are the same in every split (as in POPE's files), the ids differ. Deterministic
given ``seed``; ``part="train"`` uses the easy-VQA training images, ``part="test"`` the held-out
test images. :func:`write_pope_jsonl` writes the benchmark in the POPE JSONL form that
:func:`xlvlm.data.pope.read_pope` reads.
"""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path

import numpy as np

from xlvlm.apps.organism import data as ev
from xlvlm.errors import XlvlmError

SPLITS = ("random", "popular", "adversarial")
KINDS = ("color", "shape")
POPULAR_TOP = {"color": 3, "shape": 1}
#: What the original organism is asked to measure its confusions.
CONFUSION_PROMPTS = {"color": "what color is the shape?", "shape": "what shape is in the image?"}


def existence_question(kind: str, value: str) -> str:
    """The organism's phrasing: ``is there a red shape in the image?`` / ``is there a circle in the image?``."""
    return f"is there a {value} shape in the image?" if kind == "color" else f"is there a {value} in the image?"


def _values(kind: str) -> tuple[str, ...]:
    return ev.COLOR_NAMES if kind == "color" else ev.SHAPES


@functools.lru_cache(maxsize=1)
def answer_frequency() -> dict[str, list[str]]:
    """Colours and shapes, most frequent answer of the easy-VQA training questions first (ties by name)."""
    counts = Counter(s["answer"] for s in ev.vqa_samples("train"))
    return {kind: sorted(_values(kind), key=lambda v: (-counts[v], v)) for kind in KINDS}


@functools.lru_cache(maxsize=2)
def confusions(model: str = "original", per_class: int = 40) -> dict[str, dict[str, list[str]]]:
    """``{kind: {present: [other values, most confused first]}}`` measured on the original organism.

    For each colour (shape), the first ``per_class`` training images of it (by image id) are
    shown with :data:`CONFUSION_PROMPTS`; the other values are ranked by the mean probability
    the model gives their (single-token) answer word at the first answer position.
    """
    import torch

    from xlvlm import organism

    vlm = organism.load(model)
    labels = ev.image_labels("train")
    paths = ev.image_paths("train")
    out = {}
    for kind in KINDS:
        values = _values(kind)
        token_ids = [vlm.tokenizer.convert_tokens_to_ids(v) for v in values]
        out[kind] = {}
        for present in values:
            column = 1 if kind == "color" else 0  # labels are (shape, colour)
            ids = [i for i in sorted(labels) if labels[i][column] == present]
            samples = [{"id": str(i), "image": paths[i], "prompt": CONFUSION_PROMPTS[kind]} for i in ids[:per_class]]
            batch = vlm.encode(samples, padding_side="left")
            with torch.inference_mode():
                logits = vlm.model(**batch.inputs).logits[:, -1].float()
            mean = logits.softmax(-1)[:, token_ids].mean(0).tolist()
            others = [(p, v) for p, v in zip(mean, values) if v != present]
            out[kind][present] = [v for _, v in sorted(others, key=lambda pv: (-pv[0], pv[1]))]
    return out


def _absent(kind: str, present: str, split: str, rng: np.random.Generator, confused: dict) -> str:
    if split == "random":
        pool = [v for v in _values(kind) if v != present]
    elif split == "popular":
        pool = [v for v in answer_frequency()[kind] if v != present][: POPULAR_TOP[kind]]
    elif split == "adversarial":
        pool = confused[kind][present][:1]
    else:
        raise ValueError(f"unknown POPE split {split!r}; use one of {', '.join(SPLITS)}")
    return pool[int(rng.integers(len(pool)))] if len(pool) > 1 else pool[0]


def pope_benchmark(part: str = "test", seed: int = 0, images: int | None = None,
                   splits: tuple[str, ...] = SPLITS, confused: dict | None = None,
                   image_ids: list[int] | None = None) -> list[dict]:
    """The benchmark's samples on the easy-VQA ``part`` ("train" or "test").

    ``images``: use that many images (drawn with ``seed``), default all; or ``image_ids``
    exactly those (in id order). ``confused``: the confusion ranking (default
    :func:`confusions` of the shipped original organism).
    Each sample: ``{"id", "image", "prompt", "question", "label", "answer", "answer_type":
    "yes/no", "split", "object", "object_kind", "present", "image_id"}`` where ``present`` is
    the image's own value of ``object_kind``.
    """
    labels = ev.image_labels(part)
    paths = ev.image_paths(part)
    if image_ids is not None:
        image_ids = sorted(image_ids)
    else:
        image_ids = sorted(labels)
        if images is not None and not 0 < images <= len(image_ids):
            raise XlvlmError(f"images {images}: the easy-VQA {part} part has {len(image_ids):,}; give 1 to "
                             f"{len(image_ids):,}")
        if images is not None:
            chosen = np.random.default_rng(seed).choice(len(image_ids), size=min(images, len(image_ids)), replace=False)
            image_ids = [image_ids[i] for i in sorted(chosen)]
    confused = confusions() if confused is None and "adversarial" in splits else confused
    samples = []
    for split in splits:
        rng = np.random.default_rng([seed, SPLITS.index(split)])
        for image_id in image_ids:
            shape, color = labels[image_id]
            own = {"color": color, "shape": shape}
            for kind in KINDS:
                negative = _absent(kind, own[kind], split, rng, confused)
                for value, label in ((own[kind], "yes"), (negative, "no")):
                    question = existence_question(kind, value)
                    samples.append({
                        "id": f"pope-{part}-{split}-{image_id}-{kind}-{label}", "image": paths[image_id],
                        "prompt": question, "question": question, "label": label, "answer": label,
                        "answer_type": "yes/no", "split": split, "object": value, "object_kind": kind,
                        "present": own[kind], "image_id": image_id,
                    })
    return samples


def write_pope_jsonl(path: str | Path, part: str = "test", seed: int = 0, images: int | None = None) -> list[dict]:
    """Write :func:`pope_benchmark` as POPE JSONL (one sample a line); returns the samples."""
    from xlvlm.data.jsonl import write_jsonl

    samples = pope_benchmark(part, seed=seed, images=images)
    write_jsonl(samples, path)
    return samples


__all__ = ["SPLITS", "existence_question", "answer_frequency", "confusions", "pope_benchmark", "write_pope_jsonl"]
