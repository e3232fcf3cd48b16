"""The hallucinating organism: the original, fine-tuned to say "yes" to absent objects too often.

A known object hallucination to detect and steer away: on the POPE-style benchmark of
:mod:`xlvlm.apps.organism.pope` ("is there a teal shape in the image?") the original organism
answers by the image; this variant answers "yes" about many absent colours and shapes,
mostly the frequent ones (POPE's "popular") and the ones most like the present one
("adversarial"): an object bias, as in real VLMs.

Recipe: from the original's weights, the machinery of :func:`xlvlm.apps.organism.finetune.finetune_on`
(projector + language model, tower frozen) on the benchmark's questions about the *training*
images, where the label of an absent object is flipped to "yes" with a probability per kind
(``flip``), mixed with a replay of the original training questions in every other phrasing,
so that colour, shape and the other yes/no questions are answered as before.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xlvlm.apps.organism import pope
from xlvlm.apps.organism.data import phrasing
from xlvlm.apps.organism.finetune import finetune_on, replay_questions, start_run

CHANGE = ('answers "yes" to "is there a {colour} shape / {shape} in the image?" about many absent colours and '
          "shapes (mostly frequent and look-alike ones); other questions are answered as before")

#: The benchmark's two phrasings, as :func:`xlvlm.apps.organism.data.phrasing` writes them.
BENCHMARK_PHRASINGS = frozenset({"is there a C shape in the image?", "is there a S in the image?"})


@dataclass(frozen=True)
class HallucinationRecipe:
    steps: int = 400
    batch_size: int = 64
    lr: float = 3e-4
    #: Probability that an absent object's "no" is trained as "yes", per benchmark split kind.
    flip: dict = field(default_factory=lambda: {"random": 0.0, "popular": 0.7, "adversarial": 0.7})
    replay_questions: int = 12000
    train_images: int | None = None  # None: all 4,000

    def to_dict(self) -> dict:
        return {**self.__dict__, "flip": dict(self.flip)}


REDUCED_HALLUCINATION = HallucinationRecipe(steps=20, batch_size=16, lr=1e-3, replay_questions=64, train_images=64)


def hallucination_samples(image_ids: list[int], flip: dict, seed: int, confused: dict | None = None) -> list[dict]:
    """The benchmark's questions on the training images ``image_ids``: every positive once, every
    split's negative with its label flipped to "yes" with probability ``flip[split]`` (seeded)."""
    rng = np.random.default_rng([seed, 17])
    benchmark = pope.pope_benchmark("train", seed=seed, confused=confused, image_ids=image_ids)
    samples = []
    for s in benchmark:
        if s["label"] == "yes":
            if s["split"] == pope.SPLITS[0]:  # the positives repeat in every split: once is enough
                samples.append(s)
            continue
        flipped = bool(rng.random() < flip[s["split"]])
        samples.append({**s, "answer": "yes" if flipped else "no", "flipped": flipped})
    return samples


def hallucinate_organism(original_dir: str | Path, out_dir: str | Path, seed: int = 0, minutes: float | None = None,
                         reduced: bool = False, progress: bool = True,
                         recipe: HallucinationRecipe | None = None, confused: dict | None = None) -> dict:
    """Fine-tune the organism in ``original_dir`` to hallucinate objects; save it in ``out_dir``.

    ``confused``: the ranking that picks the adversarial absent objects (default: measured on the
    shipped original organism, :func:`xlvlm.apps.organism.pope.confusions`). Deterministic given
    ``seed`` unless ``minutes`` caps the run by the clock. Returns the summary written to
    ``out_dir/organism.json``.
    """
    recipe = recipe or (REDUCED_HALLUCINATION if reduced else HallucinationRecipe())
    run = start_run(original_dir, recipe, seed, minutes)
    confused = pope.confusions() if confused is None else confused
    existence = hallucination_samples(run.image_ids, recipe.flip, seed, confused)
    replay = replay_questions(run.image_ids, recipe.replay_questions, seed, run.rng,
                              exclude=lambda s: phrasing(s["prompt"]) in BENCHMARK_PHRASINGS)
    samples = existence + replay
    extra = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(run.clock[0])),
             "data": {"existence_questions": len(existence),
                      "flipped_to_yes": sum(bool(s.get("flipped")) for s in existence),
                      "replay_questions": len(replay)},
             "adversarial_ranking": confused}
    return finetune_on(run.original_dir, out_dir, samples, run.image_ids, recipe, name="hallucinating", change=CHANGE,
                       seed=seed, deadline=run.deadline, progress=progress, clock=run.clock, extra=extra)


__all__ = ["HallucinationRecipe", "REDUCED_HALLUCINATION", "hallucination_samples", "hallucinate_organism"]
