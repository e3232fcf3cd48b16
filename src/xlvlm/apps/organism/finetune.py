"""The fine-tuned organism: the original, taught to name the colour in its captions.

The documented change: asked "describe the image.", the original organism answers with the
shape only ("a circle"); the fine-tuned one with colour and shape ("a red circle"). Fine-tuning
starts from the original weights and trains the projector and the language model (the vision
tower stays frozen, as in stages 2-4 of :mod:`xlvlm.apps.organism.train`) on the coloured captions of
the easy-VQA training images mixed with a replay of its training questions, so that question
answering is kept while the caption style shifts.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from xlvlm.apps.organism import data as ev
from xlvlm.apps.organism.train import Encoder, load_images, save_organism, tokenize, train_language, vision_features
from xlvlm.apps.organism.vision import pixel_tensor

CHANGE = ('captions name colour and shape ("a red circle") instead of the shape only ("a circle"); '
          "questions are answered as before")


@dataclass(frozen=True)
class FinetuneRecipe:
    steps: int = 400
    batch_size: int = 64
    lr: float = 3e-4
    caption_repeats: int = 3
    replay_questions: int = 12000
    train_images: int | None = None  # None: all 4,000

    def to_dict(self) -> dict:
        return dict(self.__dict__)


REDUCED_FINETUNE = FinetuneRecipe(steps=20, batch_size=16, lr=1e-3, replay_questions=64, train_images=64)


def finetune_organism(original_dir: str | Path, out_dir: str | Path, seed: int = 0, minutes: float | None = None,
                      reduced: bool = False, progress: bool = True, recipe: FinetuneRecipe | None = None) -> dict:
    """Fine-tune the organism in ``original_dir`` to caption with colours; save it in ``out_dir``.

    Deterministic given ``seed`` unless ``minutes`` caps the run by the clock. Returns a summary
    (also written to ``out_dir/organism.json``).
    """
    recipe = recipe or (REDUCED_FINETUNE if reduced else FinetuneRecipe())
    run = start_run(original_dir, recipe, seed, minutes)
    replay = replay_questions(run.image_ids, recipe.replay_questions, seed, run.rng)
    keep = set(run.image_ids)
    captions = [s for s in ev.caption_samples("train", with_color=True) if s["image_id"] in keep]
    samples = replay + captions * recipe.caption_repeats
    return finetune_on(run.original_dir, out_dir, samples, run.image_ids, recipe, name="finetuned", change=CHANGE,
                       seed=seed, deadline=run.deadline, progress=progress, clock=run.clock)


@dataclass(frozen=True)
class RunStart:
    """The start of a fine-tuning run: the organism to start from, the clock (wall, CPU) at the
    start, the wall-clock deadline (None: none), the run's random generator (seeded by the run's
    seed) and the training images drawn with it."""

    original_dir: Path
    clock: tuple[float, float]
    deadline: float | None
    rng: np.random.Generator
    image_ids: list[int]


def start_run(original_dir: str | Path, recipe, seed: int, minutes: float | None) -> RunStart:
    """Start a fine-tuning run of ``recipe`` (its ``train_images``) from ``original_dir``.

    The generator's first draw is the training images: every variant (finetuned, hallucinating)
    draws them first, so that a recipe and seed always give the same images.
    """
    original_dir = organism_folder(original_dir)
    start, cpu_start = time.time(), time.process_time()
    deadline = None if minutes is None else start + 60 * minutes
    rng = np.random.default_rng(seed)
    image_ids = training_images(recipe.train_images, rng)
    return RunStart(original_dir, (start, cpu_start), deadline, rng, image_ids)


def organism_folder(original_dir: str | Path) -> Path:
    """The folder of the organism to start from: a folder with ``config.json``, or
    ``organism:NAME`` for a shipped one; a one-line error otherwise (before any work)."""
    from xlvlm import organism
    from xlvlm.errors import XlvlmError

    text = str(original_dir)
    if text.startswith("organism:"):
        return organism.path(text.split(":", 1)[1])
    folder = Path(text).expanduser()
    if not (folder / "config.json").is_file():
        raise XlvlmError(f"{folder}: not an organism folder (no config.json); pass the original organism's folder "
                         f"(the --out of `xlvlm organism train`) or organism:original")
    return folder


def training_images(count: int | None, rng: np.random.Generator) -> list[int]:
    """Ids of the easy-VQA training images to fine-tune on: all, or ``count`` drawn with ``rng``."""
    image_ids = sorted(ev.image_labels("train"))
    if count is not None:
        image_ids = sorted(int(i) for i in rng.choice(image_ids, size=count, replace=False))
    return image_ids


def replay_questions(image_ids: list[int], count: int, seed: int, rng: np.random.Generator,
                     exclude=None) -> list[dict]:
    """``count`` training questions about ``image_ids`` (plus the copies that balance yes/no,
    drawn with ``seed``, as in training), drawn with ``rng``; ``exclude(sample)`` true drops a
    question before the draw."""
    keep = set(image_ids)
    questions = [s for s in ev.vqa_samples("train") if s["image_id"] in keep]
    questions += ev.balanced_yes_no(questions, ev.image_labels("train"), seed=seed)
    if exclude is not None:
        questions = [s for s in questions if not exclude(s)]
    chosen = rng.choice(len(questions), size=min(count, len(questions)), replace=False)
    return [questions[i] for i in sorted(chosen)]


# params: one fine-tuning run of the organism's recipe, called only by the organism's scripts
def finetune_on(original_dir: str | Path, out_dir: str | Path, samples: list[dict], image_ids: list[int], recipe,
                name: str, change: str, seed: int, deadline: float | None = None, progress: bool = True,
                clock: tuple[float, float] | None = None, extra: dict | None = None) -> dict:
    """Fine-tune the organism in ``original_dir`` on ``samples`` (of the training images
    ``image_ids``) with ``recipe`` (steps, batch_size, lr); save it with its ``organism.json``.

    The projector and the language model train, the vision tower stays frozen (its features are
    computed once per image). ``extra`` goes into ``organism.json`` as it is.
    """
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    start, cpu_start = clock or (time.time(), time.process_time())
    original_dir = organism_folder(original_dir)
    model = LlavaForConditionalGeneration.from_pretrained(original_dir, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(original_dir)
    paths = ev.image_paths("train")
    image_index = {image_id: row for row, image_id in enumerate(image_ids)}
    pixels = pixel_tensor(load_images([paths[i] for i in image_ids]), processor.image_processor)
    features = vision_features(model, pixels)
    tokenized = tokenize(samples, Encoder(processor), image_index)
    result = train_language(model, tokenized, features, steps=recipe.steps, batch_size=recipe.batch_size,
                            lr=recipe.lr, seed=seed, deadline=deadline, progress=progress, desc=f"fine-tune ({name})",
                            warmup=20)
    original_info = {}
    info_file = Path(original_dir) / "organism.json"
    if info_file.is_file():
        original_info = json.loads(info_file.read_text())
    info = {
        "name": name,
        "change": change,
        "seed": seed,
        "from": {"seed": original_info.get("seed"), "recipe": original_info.get("recipe")},
        "recipe": recipe.to_dict(),
        "language": {"steps": result["steps"], "losses": [round(x, 5) for x in result["losses"]],
                     "first_loss": result["first_loss"], "last_loss": result["last_loss"], "samples": len(samples)},
        **(extra or {}),
        "seconds": round(time.time() - start, 1),
        "cpu_seconds": round(time.process_time() - cpu_start, 1),
        "torch_threads": torch.get_num_threads(),
    }
    save_organism(model, processor, Path(out_dir), info)
    return info
