"""easy-VQA (PyPI ``easy-vqa``): 64x64 images of one coloured shape, with simple questions.

Real data that ships with the package and reads offline in well under a second: 38,575 train
questions over 4,000 images and 9,673 test questions over 1,000 images, 13 answers.
Each question becomes one sample: ``{"id": "easyvqa-<split>-<index>", "image", "prompt",
"question", "answer", "answer_type", "image_id"}``, where ``<index>`` is the question's
position in the package's list and ``answer_type`` is ``yes/no`` (yes, no), ``shape``
(circle, rectangle, triangle) or ``color`` (every other answer: the eight colours).
"""

from __future__ import annotations

from xlvlm.data._common import question_prompt
from xlvlm.errors import XlvlmError

EASYVQA_SPLITS = ("train", "test")
SHAPES = ("circle", "rectangle", "triangle")


def easyvqa_answer_type(answer: str) -> str:
    """``yes/no``, ``shape`` or ``color``."""
    if answer in ("yes", "no"):
        return "yes/no"
    if answer in SHAPES:
        return "shape"
    return "color"


def read_easyvqa(split: str = "train", prompt: str = "{question}") -> list[dict]:
    """Samples of easy-VQA's ``train`` or ``test`` split; ``prompt`` is a ``{question}`` template."""
    if split not in EASYVQA_SPLITS:
        raise XlvlmError(f"easyvqa: unknown split {split!r}; use easyvqa:train or easyvqa:test")
    try:
        import easy_vqa
    except ImportError:
        raise XlvlmError("easyvqa: the 'easy-vqa' package is not installed; run: pip install easy-vqa")
    if split == "train":
        texts, answers, image_ids = easy_vqa.get_train_questions()
        image_paths = easy_vqa.get_train_image_paths()
    else:
        texts, answers, image_ids = easy_vqa.get_test_questions()
        image_paths = easy_vqa.get_test_image_paths()
    samples = []
    for index, (question, answer, image_id) in enumerate(zip(texts, answers, image_ids)):
        if image_id not in image_paths:
            raise XlvlmError(f"easyvqa: image {image_id} of {split} question {index} is missing from the easy-vqa package; reinstall easy-vqa")
        samples.append({
            "id": f"easyvqa-{split}-{index}",
            "image": str(image_paths[image_id]),
            "prompt": question_prompt(prompt, question, "easyvqa"),
            "question": question,
            "answer": answer,
            "answer_type": easyvqa_answer_type(answer),
            "image_id": image_id,
        })
    return samples
