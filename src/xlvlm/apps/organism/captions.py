"""Captions of the organism and what they name.

Each easy-VQA image has one shape and one colour (see :func:`xlvlm.apps.organism.data.image_labels`),
so its caption is known: ``"a circle"`` (the original organism's style) or ``"a red circle"``
(the fine-tuned organism's style). Asked "describe the image.", the organism answers in its
style; :func:`naming_report` measures how often a caption names a colour at all, and whether
the named shape and colour are the image's.
"""

from __future__ import annotations

from xlvlm.apps.organism.data import CAPTION_PROMPT, COLOR_NAMES, SHAPES, caption, caption_samples

__all__ = ["CAPTION_PROMPT", "caption", "caption_samples", "named_colors", "named_shapes", "naming_report"]


def named_colors(text: str) -> list[str]:
    """The easy-VQA colour words in ``text``, in order."""
    return [w for w in text.lower().replace(".", " ").split() if w in COLOR_NAMES]


def named_shapes(text: str) -> list[str]:
    """The easy-VQA shape words in ``text``, in order."""
    return [w for w in text.lower().replace(".", " ").split() if w in SHAPES]


def naming_report(predictions: list[dict]) -> dict:
    """Shares over caption predictions (dicts with ``prediction``, ``shape``, ``color``).

    - ``names_color``: captions naming any colour;
    - ``color_correct``: captions naming exactly the image's colour (and no other);
    - ``shape_correct``: captions naming exactly the image's shape;
    - ``exact_with_color`` / ``exact_without_color``: captions equal to ``"a red circle"`` /
      ``"a circle"`` for the image.
    """
    n = len(predictions)
    if n == 0:
        raise ValueError("naming_report: no predictions")
    names_color = color_correct = shape_correct = exact_with = exact_without = 0
    for p in predictions:
        text = p["prediction"].strip()
        colors, shapes = named_colors(text), named_shapes(text)
        names_color += bool(colors)
        color_correct += colors == [p["color"]]
        shape_correct += shapes == [p["shape"]]
        exact_with += text == caption(p["shape"], p["color"], with_color=True)
        exact_without += text == caption(p["shape"], p["color"], with_color=False)
    return {
        "n": n,
        "names_color": names_color / n,
        "color_correct": color_correct / n,
        "shape_correct": shape_correct / n,
        "exact_with_color": exact_with / n,
        "exact_without_color": exact_without / n,
    }
