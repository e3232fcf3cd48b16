"""Stage 1 of the organism: the CLIP vision tower, pretrained alone as a shape/colour classifier.

Trained end to end through the language model, a small vision tower learns colour at once but
shape barely (a prototype: 49% shape). Taught first to classify shape and colour from its
last-layer CLS token, on easy-VQA training images plus freshly drawn ones, it sees shapes well;
the later stages keep it frozen, and LLaVA passes that CLS token and the patch tokens
(``vision_feature_layer=-1``, strategy "full") through the projector to the language model.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from xlvlm.apps.organism.data import COLOR_NAMES, SHAPES, draw_shape


def pixel_tensor(images, image_processor, chunk: int = 512) -> torch.Tensor:
    """``(N, 3, H, W)`` float tensor of ``images`` (PIL) through the model's image processor."""
    parts = []
    for start in range(0, len(images), chunk):
        out = image_processor(images=list(images[start:start + chunk]), return_tensors="pt")
        parts.append(out["pixel_values"])
    return torch.cat(parts)


def drawn_images(n: int, seed: int) -> tuple[list, torch.Tensor, torch.Tensor]:
    """``n`` drawn easy-VQA-style images with balanced labels: (images, shape ids, colour ids)."""
    rng = np.random.default_rng(seed)
    shapes = rng.integers(0, len(SHAPES), size=n)
    colors = rng.integers(0, len(COLOR_NAMES), size=n)
    images = [draw_shape(rng, SHAPES[s], COLOR_NAMES[c]) for s, c in zip(shapes, colors)]
    return images, torch.as_tensor(shapes), torch.as_tensor(colors)


class _Probe(nn.Module):
    """Shape and colour logits, (B, 3) and (B, 8), from the tower's last-layer CLS token."""

    def __init__(self, vision_model: nn.Module, hidden: int):
        super().__init__()
        self.vision_model = vision_model
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, len(SHAPES) + len(COLOR_NAMES))

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # hidden_states[-1] is what LLaVA reads with vision_feature_layer=-1 (no post-layernorm).
        hidden = self.vision_model(pixel_values=pixels, output_hidden_states=True).hidden_states[-1]
        logits = self.head(self.norm(hidden[:, 0]))
        return logits[:, : len(SHAPES)], logits[:, len(SHAPES):]


# params: the organism's vision pre-training, its hyperparameters one keyword each
def pretrain_vision(vision_model: nn.Module, pixels: torch.Tensor, shapes: torch.Tensor, colors: torch.Tensor,
                    steps: int, batch_size: int = 128, lr: float = 2e-3, seed: int = 0,
                    deadline: float | None = None, progress: bool = True) -> dict:
    """Train ``vision_model`` (a ``CLIPVisionModel``) in place to classify shape and colour.

    ``pixels`` (N, 3, H, W) with labels ``shapes`` (N,) and ``colors`` (N,). Images are flipped
    left-right at random (shapes are symmetric that way). Cosine learning rate; stops early at
    ``deadline`` (a ``time.time()`` value). Returns ``{"steps", "loss"}``.
    """
    from xlvlm.progress import bar as progress_bar

    hidden = vision_model.config.hidden_size
    probe = _Probe(vision_model, hidden)
    probe.train()
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    probe.norm.reset_parameters()
    nn.init.normal_(probe.head.weight, std=0.02)
    nn.init.zeros_(probe.head.bias)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(steps, warmup=min(100, steps // 10)))
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    bar = progress_bar(range(steps), desc="vision tower", enabled=progress, mininterval=2)
    done = 0
    for step in bar:
        idx = torch.randint(0, len(pixels), (batch_size,), generator=generator)
        batch = pixels[idx]
        flip = torch.rand(batch_size, generator=generator) < 0.5
        batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
        shape_logits, color_logits = probe(batch)
        loss = loss_fn(shape_logits, shapes[idx]) + loss_fn(color_logits, colors[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        done = step + 1
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        if deadline is not None and time.time() > deadline:
            break
    bar.close()
    vision_model.eval()
    probe.eval()
    return {"steps": done, "loss": float(np.mean(losses[-50:])), "probe": probe}


@torch.no_grad()
def probe_accuracy(probe: nn.Module, pixels: torch.Tensor, shapes: torch.Tensor, colors: torch.Tensor,
                   batch_size: int = 256) -> dict:
    """``{"shape", "color"}``: accuracy (fractions) of the classifier on ``pixels`` (N, 3, H, W)."""
    shape_hits = color_hits = 0
    for start in range(0, len(pixels), batch_size):
        shape_logits, color_logits = probe(pixels[start:start + batch_size])
        shape_hits += (shape_logits.argmax(-1) == shapes[start:start + batch_size]).sum().item()
        color_hits += (color_logits.argmax(-1) == colors[start:start + batch_size]).sum().item()
    return {"shape": shape_hits / len(pixels), "color": color_hits / len(pixels)}


def warmup_cosine(total: int, warmup: int, floor: float = 0.0):
    """Learning-rate factor per step: linear warm-up, then cosine decay from 1 to ``floor``."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return floor + (1 - floor) * 0.5 * (1 + np.cos(np.pi * min(1.0, progress)))
    return factor
