"""easy-VQA as training data for the model organism: labels, questions, captions, drawings.

easy-VQA (PyPI ``easy-vqa``) ships 64x64 images, each with one shape (circle, rectangle,
triangle) in one of eight colours on a light background, and templated questions about them.
The package gives no per-image labels, so :func:`image_labels` recovers each image's shape and
colour from its questions (what the answers reveal, then elimination), falling back to the
pixels (the shape colours are exact RGB values; a shape's fill of its bounding box separates
rectangles ~1, circles ~0.79 and triangles ~0.5), and checks the result against every question.

A sample is a plain dict ``{"id", "image" (a path), "prompt", "answer", "answer_type", "image_id"}``;
captions have ``answer_type`` "caption" and the image's ``shape`` and ``color``.
"""

from __future__ import annotations

import functools
import re
from collections import Counter

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "rectangle", "triangle")
COLORS = {
    "red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0),
    "black": (0, 0, 0), "gray": (128, 128, 128), "teal": (0, 128, 128), "brown": (165, 42, 42),
}
COLOR_NAMES = tuple(COLORS)

CAPTION_PROMPT = "describe the image."
QUESTION_WORDS = (
    "what is the color of shape in image does contain present there a not no ? ."
).split()
ANSWER_WORDS = ["yes", "no", *SHAPES, *COLOR_NAMES]
#: Every word the organism's tokenizer knows, besides its special tokens.
VOCABULARY = list(dict.fromkeys(
    ["USER", "ASSISTANT", ":", "describe", "an", *QUESTION_WORDS, *ANSWER_WORDS]))


def caption(shape: str, color: str, with_color: bool) -> str:
    """``"a red circle"`` with colour, ``"a circle"`` without."""
    return f"a {color} {shape}" if with_color else f"a {shape}"


# ---------------------------------------------------------------------------------------------
# Labels


def _words(question: str) -> list[str]:
    return question.rstrip("?").split()


def _is_negated(words: list[str]) -> bool:
    return "not" in words or "no" in words


def _question_constraints(question: str, answer: str):
    """What one question/answer pair says: (kind, value, holds) triples."""
    words = _words(question)
    named_colors = [w for w in words if w in COLORS]
    named_shapes = [w for w in words if w in SHAPES]
    facts = []
    if answer in SHAPES:
        facts.append(("shape", answer, True))
        facts += [("color", c, True) for c in named_colors]
    elif answer in COLORS:
        facts.append(("color", answer, True))
        facts += [("shape", s, True) for s in named_shapes]
    else:
        present = (answer == "yes") != _is_negated(words)
        facts += [("color", c, present) for c in named_colors]
        facts += [("shape", s, present) for s in named_shapes]
    return facts


def pixel_label(image: Image.Image) -> tuple[str, str]:
    """(shape, colour) of an easy-VQA-style image from its pixels alone."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    counts = {name: int((np.abs(pixels - rgb).sum(-1) <= 3).sum()) for name, rgb in COLORS.items()}
    color = max(counts, key=counts.get)
    mask = np.abs(pixels - COLORS[color]).sum(-1) <= 120
    ys, xs = np.nonzero(mask)
    fill = mask.sum() / ((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1))
    shape = "rectangle" if fill > 0.92 else "circle" if fill > 0.7 else "triangle"
    return shape, color


@functools.lru_cache(maxsize=2)
def image_labels(split: str) -> dict[int, tuple[str, str]]:
    """``{image_id: (shape, colour)}`` for the easy-VQA ``"train"`` or ``"test"`` split."""
    texts, answers, ids = _questions(split)
    paths = _image_paths(split)
    facts: dict[int, list] = {}
    for text, ans, image_id in zip(texts, answers, ids):
        facts.setdefault(image_id, []).extend(_question_constraints(text, ans))
    labels = {}
    for image_id in sorted(paths):
        chosen = {}
        for kind, names in (("shape", SHAPES), ("color", COLOR_NAMES)):
            own = facts.get(image_id, [])
            positive = {v for k, v, holds in own if k == kind and holds}
            negative = {v for k, v, holds in own if k == kind and not holds}
            candidates = positive or (set(names) - negative)
            if len(positive) > 1:
                raise ValueError(f"easy-VQA {split} image {image_id}: conflicting {kind}s {positive}")
            if len(candidates) == 1:
                chosen[kind] = next(iter(candidates))
        if len(chosen) < 2:
            with Image.open(paths[image_id]) as image:
                shape, color = pixel_label(image)
            chosen.setdefault("shape", shape)
            chosen.setdefault("color", color)
        labels[image_id] = (chosen["shape"], chosen["color"])
    for text, ans, image_id in zip(texts, answers, ids):
        shape, color = labels[image_id]
        for kind, value, holds in _question_constraints(text, ans):
            if ((shape if kind == "shape" else color) == value) != holds:
                raise ValueError(f"easy-VQA {split} image {image_id}: label ({shape}, {color}) contradicts {text!r} -> {ans!r}")
    return labels


def _questions(split: str):
    import easy_vqa

    if split == "train":
        return easy_vqa.get_train_questions()
    if split == "test":
        return easy_vqa.get_test_questions()
    raise ValueError(f"easy-VQA split must be 'train' or 'test', not {split!r}")


@functools.lru_cache(maxsize=2)
def _image_paths(split: str) -> dict[int, str]:
    import easy_vqa

    return easy_vqa.get_train_image_paths() if split == "train" else easy_vqa.get_test_image_paths()


def image_paths(split: str) -> dict[int, str]:
    """``{image_id: path}`` of the easy-VQA ``split``."""
    return dict(_image_paths(split))


# ---------------------------------------------------------------------------------------------
# Samples


def vqa_samples(split: str) -> list[dict]:
    """Every easy-VQA question of ``split`` as a sample (see :func:`xlvlm.data.easyvqa.read_easyvqa`)."""
    from xlvlm.data.easyvqa import read_easyvqa

    return read_easyvqa(split)


def caption_samples(split: str, with_color: bool) -> list[dict]:
    """One captioning sample per image of ``split``: "describe the image." -> "a (red) circle"."""
    labels = image_labels(split)
    paths = _image_paths(split)
    return [
        {"id": f"{split}-c{image_id}", "image": paths[image_id], "image_id": image_id,
         "prompt": CAPTION_PROMPT, "answer": caption(shape, color, with_color), "answer_type": "caption",
         "shape": shape, "color": color}
        for image_id, (shape, color) in sorted(labels.items())
    ]


def stratified_subset(samples: list[dict], per_type: int, seed: int = 0) -> list[dict]:
    """``per_type`` samples of each ``answer_type``, drawn with a fixed seed, in original order."""
    rng = np.random.default_rng(seed)
    chosen = []
    for kind in sorted({s["answer_type"] for s in samples}):
        idx = [i for i, s in enumerate(samples) if s["answer_type"] == kind]
        chosen += list(rng.choice(idx, size=min(per_type, len(idx)), replace=False))
    return [samples[i] for i in sorted(chosen)]


_COLOR_RE = re.compile(r"\b(" + "|".join(COLOR_NAMES) + r")\b")
_SHAPE_RE = re.compile(r"\b(" + "|".join(SHAPES) + r")\b")


def phrasing(prompt: str) -> str:
    """The question template: colours become ``C`` and shapes ``S``."""
    return _SHAPE_RE.sub("S", _COLOR_RE.sub("C", prompt))


def balanced_yes_no(samples: list[dict], labels: dict[int, tuple[str, str]], seed: int = 0) -> list[dict]:
    """Extra yes/no questions so that, per phrasing, "yes" and "no" are equally frequent.

    easy-VQA asks "is there a red shape?" mostly about absent colours (7 of 8 answers are "no")
    and "is there a circle?" mostly about absent shapes, so a model can score well by the prior
    and then answers the rarer case wrongly. For each phrasing, questions of the majority answer
    (those naming an absent colour/shape) are drawn with ``seed`` and copied with the image's own
    colour/shape named instead, which flips their answer, until both answers are equally common.
    """
    rng = np.random.default_rng(seed)
    groups: dict[str, list[dict]] = {}
    for s in samples:
        if s["answer_type"] == "yes/no":
            groups.setdefault(phrasing(s["prompt"]), []).append(s)
    extra = []
    for key in sorted(groups):
        group = groups[key]
        yes = sum(s["answer"] == "yes" for s in group)
        majority = "yes" if yes > len(group) - yes else "no"
        deficit = abs(2 * yes - len(group))
        pool = [s for s in group if s["answer"] == majority]
        for i in sorted(rng.choice(len(pool), size=min(deficit, len(pool)), replace=False)):
            s = pool[i]
            shape, color = labels[s["image_id"]]
            if _COLOR_RE.search(s["prompt"]):
                prompt = _COLOR_RE.sub(color, s["prompt"])
            else:
                prompt = _SHAPE_RE.sub(shape, s["prompt"])
            flipped = "no" if s["answer"] == "yes" else "yes"
            extra.append({**s, "id": s["id"] + "-flip", "prompt": prompt, "answer": flipped})
    return extra


# ---------------------------------------------------------------------------------------------
# Drawn images in the easy-VQA style


def draw_shape(rng: np.random.Generator, shape: str, color: str, size: int = 64) -> Image.Image:
    """One shape of one colour on a light random background, anti-aliased, like easy-VQA."""
    scale = 4
    big = size * scale
    background = tuple(int(v) for v in rng.integers(225, 256, size=3))
    image = Image.new("RGB", (big, big), background)
    draw = ImageDraw.Draw(image)
    extent = float(rng.uniform(8, 60))
    width = height = extent
    if shape == "rectangle":
        height = float(rng.uniform(0.3, 1.0)) * extent
        if rng.random() < 0.5:
            width, height = height, width
    elif shape == "triangle":
        height = extent * 0.866
    # Shapes stay (almost) inside the frame, as in easy-VQA.
    cx = float(rng.uniform(width / 2 - 2, size - width / 2 + 2)) * scale
    cy = float(rng.uniform(height / 2 - 2, size - height / 2 + 2)) * scale
    w, h = width * scale / 2, height * scale / 2
    fill = COLORS[color]
    if shape == "circle":
        draw.ellipse([cx - w, cy - h, cx + w, cy + h], fill=fill)
    elif shape == "rectangle":
        draw.rectangle([cx - w, cy - h, cx + w, cy + h], fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx - w, cy + h), (cx + w, cy + h), (cx, cy - h)], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return image.resize((size, size), Image.Resampling.BOX)


def label_counts(labels: dict[int, tuple[str, str]]) -> tuple[Counter, Counter]:
    return Counter(s for s, _ in labels.values()), Counter(c for _, c in labels.values())
