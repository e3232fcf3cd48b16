"""Training the model organism from scratch on CPU, in four stages, like LLaVA itself.

The data: the easy-VQA training questions, plus copies that balance yes/no per phrasing (see
:func:`~xlvlm.apps.organism.data.balanced_yes_no`), plus one caption per image ("describe the
image." -> "a circle"). The loss is on the answer tokens only.

1. **Vision tower** (the CLIP part) alone, as a shape/colour classifier on its CLS token, on the
   training images and drawn ones (:mod:`xlvlm.apps.organism.vision`). Frozen from then on.
2. **Language model** (the Llama part) alone, on text-only dialogues where the image is
   replaced by its description in words: "USER: red circle is there a red shape? ASSISTANT:
   yes". Trained directly with images, the Llama learnt "what colour?" at once but stayed at
   chance on yes/no for thousands of steps: comparing a question word with an image feature
   from scratch is a hard credit-assignment problem, comparing two words is not.
3. **Projector** alone (alignment): it learns to map image features to what the Llama already
   reads, as the description did.
4. **Projector + language model** together on the image dialogues.

As the tower is frozen, its features are computed once per image and the projector and the
language model run on them, which is the same computation as
``LlavaForConditionalGeneration.forward`` (a test checks it).

Everything is seeded: the same seed on the same machine (and thread count) gives the same
weights, unless ``minutes`` caps the run by the clock.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from xlvlm.apps.organism import data as ev
from xlvlm.apps.organism.model import OrganismSizes, build_organism
from xlvlm.apps.organism.vision import drawn_images, pixel_tensor, pretrain_vision, probe_accuracy, warmup_cosine


@dataclass(frozen=True)
class Recipe:
    """Everything that sets what :func:`train_organism` learns (steps, batch sizes, rates)."""

    sizes: OrganismSizes = field(default_factory=OrganismSizes)
    # 1. vision tower as a shape/colour classifier
    vision_steps: int = 2500
    vision_batch: int = 128
    vision_lr: float = 2e-3
    drawn_images: int = 24000
    # 2. language model on text-only dialogues (the image described in words)
    text_steps: int = 1500
    text_lr: float = 1e-3
    # 3. projector alone (alignment), 4. projector + language model
    align_steps: int = 300
    align_lr: float = 1e-3
    steps: int = 800
    lr: float = 5e-4
    batch_size: int = 64
    caption_repeats: int = 2
    caption_with_color: bool = False
    train_images: int | None = None  # None: all 4,000

    def to_dict(self) -> dict:
        out = dict(self.__dict__)
        out["sizes"] = self.sizes.to_dict()
        return out


REDUCED = Recipe(
    sizes=OrganismSizes(image_size=32, patch_size=16, vision_hidden=32, vision_layers=1, vision_heads=2,
                        text_hidden=32, text_layers=2, text_heads=2, text_kv_heads=2, text_intermediate=64),
    vision_steps=10, vision_batch=32, drawn_images=32, text_steps=30, text_lr=3e-3, align_steps=10,
    steps=30, lr=3e-3, batch_size=16, train_images=64,
)


# ---------------------------------------------------------------------------------------------
# Turning samples into token ids


class Encoder:
    """Token ids of (prompt, answer) pairs as the processor would make them, cached per prompt."""

    def __init__(self, processor):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_tokens = processor.image_processor.crop_size["height"] // processor.patch_size
        self.image_tokens = self.image_tokens ** 2 + processor.num_additional_image_tokens
        if processor.vision_feature_select_strategy == "default":
            self.image_tokens -= 1
        self._prompts: dict[str, list[int]] = {}
        self._answers: dict[str, list[int]] = {}

    def prompt_text(self, prompt: str, description: str | None = None) -> str:
        """The templated user turn: the image (or, text-only, its ``description``), then ``prompt``."""
        if description is None:
            content = [{"type": "image"}, {"type": "text", "text": prompt}]
        else:
            content = [{"type": "text", "text": f"{description}\n{prompt}"}]
        messages = [{"role": "user", "content": content}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def prompt_ids(self, prompt: str, description: str | None = None) -> list[int]:
        key = (prompt, description)
        if key not in self._prompts:
            text = self.prompt_text(prompt, description)
            text = text.replace(self.processor.image_token, self.processor.image_token * self.image_tokens)
            self._prompts[key] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self._prompts[key]

    def answer_ids(self, answer: str) -> list[int]:
        if answer not in self._answers:
            ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
            self._answers[answer] = ids + [self.tokenizer.eos_token_id]
        return self._answers[answer]


@dataclass
class TokenizedSet:
    """Right-padded ``ids`` (N, L), ``answer_mask`` (N, L) true on answer tokens, ``image`` (N,)."""

    ids: torch.Tensor
    attention: torch.Tensor
    answer_mask: torch.Tensor
    image: torch.Tensor

    def __len__(self) -> int:
        return len(self.ids)


def tokenize(samples: list[dict], encoder: Encoder, image_index: dict,
             descriptions: dict[int, str] | None = None) -> TokenizedSet:
    """Token ids of ``samples``; with ``descriptions`` ({image_id: "red circle"}), text-only
    dialogues where the description stands in place of the image."""
    rows = []
    for s in samples:
        description = None if descriptions is None else descriptions[s["image_id"]]
        prompt, answer = encoder.prompt_ids(s["prompt"], description), encoder.answer_ids(s["answer"])
        rows.append((prompt + answer, len(prompt)))
    width = max(len(r) for r, _ in rows)
    pad = encoder.tokenizer.pad_token_id
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    answer_mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, (row, start) in enumerate(rows):
        ids[i, : len(row)] = torch.as_tensor(row)
        attention[i, : len(row)] = 1
        answer_mask[i, start: len(row)] = True
    image = torch.as_tensor([image_index[s["image_id"]] for s in samples])
    return TokenizedSet(ids, attention, answer_mask, image)


# ---------------------------------------------------------------------------------------------
# The stage-2 forward on cached vision features


@torch.no_grad()
def vision_features(model, pixels: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """``(N, T, Dv)``: the vision tower's selected hidden states, before the projector."""
    layer = model.config.vision_feature_layer
    parts = []
    for start in range(0, len(pixels), batch_size):
        hidden = model.model.vision_tower(pixels[start:start + batch_size], output_hidden_states=True).hidden_states[layer]
        if model.config.vision_feature_select_strategy == "default":
            hidden = hidden[:, 1:]
        parts.append(hidden)
    return torch.cat(parts)


def answer_logits(model, ids, attention, answer_mask, features) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits predicting each answer token, and those tokens: ``(M, V)``, ``(M,)``.

    ``ids``/``attention``/``answer_mask`` (B, L) right-padded, ``features`` (B, T, Dv) the
    vision features of each row's image, or None for text-only rows.
    """
    embeds = model.get_input_embeddings()(ids)
    if features is not None:
        image_embeds = model.model.multi_modal_projector(features).to(embeds.dtype)
        image_mask = (ids == model.config.image_token_id).unsqueeze(-1).expand_as(embeds)
        embeds = embeds.masked_scatter(image_mask, image_embeds)
    hidden = model.model.language_model(inputs_embeds=embeds, attention_mask=attention).last_hidden_state
    # The token at position p is predicted from position p - 1.
    predicting = answer_mask[:, 1:]
    logits = model.lm_head(hidden[:, :-1][predicting])
    return logits, ids[:, 1:][predicting]


PARTS = {
    "language": lambda m: [*m.model.language_model.parameters(), *m.lm_head.parameters()],
    "projector": lambda m: [*m.model.multi_modal_projector.parameters()],
    "all": lambda m: [*m.model.multi_modal_projector.parameters(), *m.model.language_model.parameters(),
                      *m.lm_head.parameters()],
}


def _trainable(model, parts: str) -> list[nn.Parameter]:
    """Freeze ``model`` but for ``parts`` (see :data:`PARTS`); returns their parameters."""
    model.requires_grad_(False)
    trainable = PARTS[parts](model)
    for p in trainable:
        p.requires_grad_(True)
    return trainable


def _optimizer(model, trainable: list[nn.Parameter], lr: float, steps: int, warmup: int):
    """AdamW with weight decay on matrices other than the embeddings, under a warmup-cosine schedule."""
    embeddings = model.get_input_embeddings().weight
    decayed = [p for p in trainable if p.ndim >= 2 and p is not embeddings]
    kept = [p for p in trainable if p.ndim < 2 or p is embeddings]
    optimizer = torch.optim.AdamW([{"params": decayed, "weight_decay": 0.01}, {"params": kept, "weight_decay": 0.0}],
                                  lr=lr, betas=(0.9, 0.98))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(steps, min(warmup, steps // 10), floor=0.1))
    return optimizer, schedule


class _SeededEpochs:
    """Batches of row indices: epochs of a seeded shuffle, a new shuffle once one is used up."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size = n, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(n, generator=self.generator)
        self.cursor = 0

    def next(self) -> torch.Tensor:
        if self.cursor + self.batch_size > len(self.order):
            self.order, self.cursor = torch.randperm(self.n, generator=self.generator), 0
        idx = self.order[self.cursor: self.cursor + self.batch_size]
        self.cursor += self.batch_size
        return idx


def _answer_loss(model, tokenized: TokenizedSet, features: torch.Tensor | None, idx: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the answer tokens of rows ``idx``, cut to their longest row."""
    width = int(tokenized.attention[idx].sum(1).max())
    logits, targets = answer_logits(
        model, tokenized.ids[idx, :width], tokenized.attention[idx, :width],
        tokenized.answer_mask[idx, :width], None if features is None else features[tokenized.image[idx]])
    return nn.functional.cross_entropy(logits, targets)


# params: the organism's training loop, its hyperparameters one keyword each
def train_language(model, tokenized: TokenizedSet, features: torch.Tensor | None, steps: int, batch_size: int,
                   lr: float, seed: int, deadline: float | None = None, progress: bool = True,
                   desc: str = "llava", warmup: int = 100, parts: str = "all") -> dict:
    """Train ``parts`` of ``model`` in place; the vision tower is always frozen.

    ``parts``: "language" (Llama + LM head, for text-only rows: ``features`` None), "projector"
    or "all" (projector + Llama + LM head).

    Epochs of a seeded shuffle over ``tokenized``; loss = cross-entropy on answer tokens.
    Returns ``{"steps", "losses", "first_loss", "last_loss"}``: one mean loss per 50 steps, and
    the mean loss of the first and of the last 10 steps.
    """
    from xlvlm.progress import bar as progress_bar

    trainable = _trainable(model, parts)
    model.train()
    optimizer, schedule = _optimizer(model, trainable, lr, steps, warmup)
    batches = _SeededEpochs(len(tokenized), batch_size, seed)
    losses, window, every = [], [], []
    bar = progress_bar(range(steps), desc=desc, enabled=progress, mininterval=2)
    done = 0
    for step in bar:
        loss = _answer_loss(model, tokenized, features, batches.next())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        schedule.step()
        window.append(loss.item())
        every.append(window[-1])
        done = step + 1
        if len(window) == 50:
            losses.append(float(np.mean(window)))
            window = []
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if deadline is not None and time.time() > deadline:
            break
    bar.close()
    if window:
        losses.append(float(np.mean(window)))
    model.requires_grad_(False)
    model.eval()
    return {"steps": done, "losses": losses, "first_loss": float(np.mean(every[:10])),
            "last_loss": float(np.mean(every[-10:]))}


# ---------------------------------------------------------------------------------------------
# Whole runs


def load_images(paths) -> list:
    from xlvlm.data.images import load_image

    return [load_image(p) for p in paths]


def training_samples(recipe: Recipe, seed: int, caption_with_color: bool) -> tuple[list[dict], dict[int, int], list[str]]:
    """Samples, ``{image_id: row}`` and the image paths of the rows, for the training split."""
    labels = ev.image_labels("train")
    paths = ev.image_paths("train")
    image_ids = sorted(labels)
    if recipe.train_images is not None:
        rng = np.random.default_rng(seed)
        image_ids = sorted(int(i) for i in rng.choice(image_ids, size=recipe.train_images, replace=False))
    keep = set(image_ids)
    questions = [s for s in ev.vqa_samples("train") if s["image_id"] in keep]
    questions += ev.balanced_yes_no(questions, labels, seed=seed)
    captions = [s for s in ev.caption_samples("train", with_color=caption_with_color) if s["image_id"] in keep]
    samples = questions + captions * recipe.caption_repeats
    image_index = {image_id: row for row, image_id in enumerate(image_ids)}
    return samples, image_index, [paths[i] for i in image_ids]


def save_organism(model, processor, out_dir: Path, info: dict) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    # Where the processor was loaded from is no part of what it is.
    for key in ("is_local", "local_files_only", "name_or_path"):
        processor.tokenizer.init_kwargs.pop(key, None)
    processor.save_pretrained(out_dir)
    (out_dir / "organism.json").write_text(json.dumps(info, indent=2) + "\n")
    return out_dir


def describe(labels: dict[int, tuple[str, str]]) -> dict[int, str]:
    """``{image_id: "red circle"}``: what stands in place of the image in text-only dialogues."""
    return {image_id: f"{color} {shape}" for image_id, (shape, color) in labels.items()}


def _class_indices(labels: dict[int, tuple[str, str]], image_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N,)`` shape and ``(N,)`` colour class of each image: the vision stage's targets."""
    return (torch.as_tensor([ev.SHAPES.index(labels[i][0]) for i in image_ids]),
            torch.as_tensor([ev.COLOR_NAMES.index(labels[i][1]) for i in image_ids]))


def _vision_inputs(recipe: Recipe, seed: int, processor, labels: dict, image_index: dict[int, int],
                   pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixels, shape and colour classes for stage 1: the training images, then drawn ones."""
    shapes, colors = _class_indices(labels, sorted(image_index, key=image_index.get))
    drawn, drawn_shapes, drawn_colors = drawn_images(recipe.drawn_images, seed=seed + 1)
    drawn_pixels = pixel_tensor(drawn, processor.image_processor)
    return torch.cat([pixels, drawn_pixels]), torch.cat([shapes, drawn_shapes]), torch.cat([colors, drawn_colors])


def _test_probe(probe, processor, reduced: bool) -> dict:
    """The stage-1 probe's shape and colour accuracy on the test images (the first 64 when ``reduced``)."""
    test_labels = ev.image_labels("test")
    test_ids = sorted(test_labels)[: 64 if reduced else None]
    pixels = pixel_tensor(load_images([ev.image_paths("test")[i] for i in test_ids]), processor.image_processor)
    return probe_accuracy(probe, pixels, *_class_indices(test_labels, test_ids))


def _language_stages(model, encoder: Encoder, samples: list[dict], image_index: dict[int, int], labels: dict,
                     pixels: torch.Tensor, recipe: Recipe, seed: int, timer: _StageClock, seconds: dict,
                     progress: bool) -> dict:
    """Stages 2 to 4 (language model on text, projector, both together); each stage's seconds go
    to ``seconds``. Returns ``{"text", "align", "joint"}``: :func:`train_language`'s results."""
    results = {}
    results["text"] = train_language(
        model, tokenize(samples, encoder, image_index, describe(labels)), None, steps=recipe.text_steps,
        batch_size=recipe.batch_size, lr=recipe.text_lr, seed=seed, deadline=timer.deadline("text"),
        progress=progress, desc="language (text)", parts="language")
    seconds["text"] = timer.lap()

    features = vision_features(model, pixels)
    tokenized = tokenize(samples, encoder, image_index)
    results["align"] = train_language(
        model, tokenized, features, steps=recipe.align_steps, batch_size=recipe.batch_size, lr=recipe.align_lr,
        seed=seed + 1, deadline=timer.deadline("align"), progress=progress, desc="projector", warmup=30,
        parts="projector")
    seconds["align"] = timer.lap()
    results["joint"] = train_language(
        model, tokenized, features, steps=recipe.steps, batch_size=recipe.batch_size, lr=recipe.lr, seed=seed + 2,
        deadline=timer.deadline("joint"), progress=progress, desc="llava", warmup=20, parts="all")
    seconds["joint"] = timer.lap()
    return results


def _stage_summary(result: dict) -> dict:
    """A :func:`train_language` result for organism.json, losses rounded."""
    return {"steps": result["steps"], "first_loss": round(result["first_loss"], 5),
            "last_loss": round(result["last_loss"], 5), "losses": [round(x, 5) for x in result["losses"]]}


def train_organism(out_dir: str | Path, seed: int = 0, minutes: float | None = None, reduced: bool = False,
                   progress: bool = True, recipe: Recipe | None = None) -> dict:
    """Train the original organism from scratch and save it (model + processor) in ``out_dir``.

    Four stages (see the module docstring and ``docs/organism.md``): vision tower, language
    model on text, projector alignment, then projector and language model together.
    ``minutes`` caps the run by the clock, each stage getting its share of the steps' time
    (then the result depends on the machine's speed; without it the run is deterministic given
    ``seed``). ``reduced`` trains a tiny model for a few steps (for tests). Returns a summary
    (also written to ``out_dir/organism.json``): recipe, steps, losses, seconds.
    """
    recipe = recipe or (REDUCED if reduced else Recipe())
    start, cpu_start = time.time(), time.process_time()
    timer = _StageClock(start, minutes, recipe)
    torch.manual_seed(seed)
    model, processor = build_organism(recipe.sizes, seed=seed)
    encoder = Encoder(processor)

    samples, image_index, image_paths = training_samples(recipe, seed, recipe.caption_with_color)
    labels = ev.image_labels("train")
    pixels = pixel_tensor(load_images(image_paths), processor.image_processor)
    vision_pixels, vision_shapes, vision_colors = _vision_inputs(recipe, seed, processor, labels, image_index, pixels)
    seconds = {"data": round(time.time() - start, 1)}

    vision = pretrain_vision(
        model.model.vision_tower, vision_pixels, vision_shapes, vision_colors, steps=recipe.vision_steps,
        batch_size=recipe.vision_batch, lr=recipe.vision_lr, seed=seed, deadline=timer.deadline("vision"),
        progress=progress)
    seconds["vision"] = timer.lap()
    probe = _test_probe(vision["probe"], processor, reduced)
    stages = _language_stages(model, encoder, samples, image_index, labels, pixels, recipe, seed, timer, seconds,
                              progress)

    info = {
        "name": "original",
        "seed": seed,
        "recipe": recipe.to_dict(),
        "samples": len(samples),
        "vision": {"steps": vision["steps"], "loss": round(vision["loss"], 5), "probe_test_accuracy": probe},
        **{name: _stage_summary(result) for name, result in stages.items()},
        "seconds_per_stage": seconds,
        "seconds": round(time.time() - start, 1),
        "cpu_seconds": round(time.process_time() - cpu_start, 1),
        "torch_threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    save_organism(model, processor, Path(out_dir), info)
    return info


class _StageClock:
    """Deadlines for each stage when the whole run is capped at ``minutes``.

    Each stage may use the time left times its share of the remaining stages' nominal cost
    (rough CPU seconds per step, measured on the full-size recipe).
    """

    COST = {"vision": 0.075, "text": 0.1, "align": 0.12, "joint": 0.155}

    def __init__(self, start: float, minutes: float | None, recipe: Recipe):
        self.end = None if minutes is None else start + 60 * minutes
        self.last = start
        self.cost = {"vision": recipe.vision_steps * self.COST["vision"], "text": recipe.text_steps * self.COST["text"],
                     "align": recipe.align_steps * self.COST["align"], "joint": recipe.steps * self.COST["joint"]}

    def deadline(self, stage: str) -> float | None:
        if self.end is None:
            return None
        stages = list(self.cost)
        remaining = sum(self.cost[s] for s in stages[stages.index(stage):])
        now = time.time()
        return now + max(0.0, self.end - now) * self.cost[stage] / remaining

    def lap(self) -> float:
        now = time.time()
        elapsed, self.last = now - self.last, now
        return round(elapsed, 1)


__all__ = ["Recipe", "REDUCED", "train_organism"]
