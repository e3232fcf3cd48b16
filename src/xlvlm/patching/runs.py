"""One forward pass over a batch of rows, each row a pair's clean or corrupted prompt, with the
states of chosen sites replaced (patching), noised (causal tracing) or kept (the clean run,
attribution). Shared by exact patching and attribution patching.

Rows are teacher-forced with the pair's first answer and right-padded (``vlm.encode``), so each
real token sits where it sits at batch size 1 and the metric is read at the position that
predicts the answer's first token, as ``vlm.score`` reads it.
"""

from __future__ import annotations

import inspect
import zlib
from dataclasses import dataclass, field

import torch

from xlvlm.errors import XlvlmError
from xlvlm.hooks import attach
from xlvlm.patching.metric import answer_token, check_metric, metric_values
from xlvlm.patching.pairs import Pair, check_aligned
from xlvlm.patching.positions import Cells, grid_cells, group_cells, question_span, token_cells
from xlvlm.patching.sites import Site


@dataclass
class Prepared:
    """A pair ready to run: its cells, answer token ids (2,), prompt length, image positions,
    prompt pieces; after the clean run its clean states per site (prompt positions (t, D), or
    (patches, D) at a vision site) and, for causal tracing, the noise on its image tokens."""

    pair: Pair
    cells: Cells
    targets: list[int]
    length: int
    image: list[int]
    pieces: list[str]
    states: dict[str, torch.Tensor] = field(default_factory=dict)
    noise: torch.Tensor | None = None

    @property
    def tracing(self) -> bool:
        return self.pair.corrupted is None


def _real_row(batch, b: int = 0) -> list[int]:
    return batch.input_ids[b, batch.offsets[b]:batch.offsets[b] + batch.lengths[b]].tolist()


def prepare(vlm, pair: Pair, layout: tuple[str, int], metric: str) -> Prepared:
    """Encode a pair, check that its prompts align, find its cells and answer tokens."""
    check_metric(metric, pair.answers, pair.id)
    batch = vlm.encode([pair.clean], answers=[pair.answers[0]])
    row, length = _real_row(batch), batch.prompt_lengths[0]
    if pair.corrupted is not None:
        other = vlm.encode([pair.corrupted], answers=[pair.answers[0]])
        check_aligned(pair.id, row[:length], _real_row(other)[:other.prompt_lengths[0]], vlm.image_token_id)
    image = [p for p in range(length) if vlm.image_token_id is not None and row[p] == vlm.image_token_id]
    pieces = vlm.tokenizer.convert_ids_to_tokens(row[:length])
    kind, size = layout
    if kind == "groups":
        cells = group_cells(image, question_span(vlm, pair.clean, pair.answers[0], row), length)
    elif kind == "tokens":
        cells = token_cells(pieces, length)
    elif kind == "all":
        cells = Cells(["all"], [list(range(length))])
    else:
        cells = grid_cells(image, vlm.image_grid(batch, 0), size, pair.id)
    cells.tokens = list(pieces)
    targets = [answer_token(vlm, pair.clean, answer) for answer in pair.answers]
    if metric == "logit-diff" and targets[0] == targets[1]:
        raise XlvlmError(f"pair {pair.id!r}: answers {pair.answers[0]!r} and {pair.answers[1]!r} start with the same "
                         f"token; the metric reads the first answer token, so choose answers that differ there")
    return Prepared(pair, cells, (targets * 2)[:2], length, image, pieces)


def vision_positions(prep: Prepared, positions: list[int], width: int) -> list[int] | None:
    """Sequence positions of image tokens -> positions in a vision-site output of ``width``
    patches (a leading class token the projector drops is counted); None when a position is
    not an image token (it has no place in the vision tower)."""
    extra = width - len(prep.image)
    if extra < 0 or not positions or any(p not in prep.image for p in positions):
        return None
    return [extra + prep.image.index(p) for p in positions]


def make_noise(prep: Prepared, scale: float, seed: int) -> torch.Tensor:
    """Gaussian noise for the pair's image tokens (n_image, D): ``scale`` times the standard
    deviation of its clean image-token embeddings, seeded by ``seed`` and the pair's id (so a
    pair gets the same noise in any batch)."""
    if not prep.image:
        raise XlvlmError(f"pair {prep.pair.id!r}: no image tokens to add noise to; causal tracing needs image tokens "
                         f"in the prompt (or give corrupted samples)")
    embeddings = prep.states["embed"][prep.image].float()
    generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(prep.pair.id.encode()))
    noise = torch.randn(embeddings.shape, generator=generator) * (scale * float(embeddings.std()))
    return noise.to(prep.states["embed"].dtype)


@dataclass
class Row:
    """One row of a forward pass: the pair, which prompt (clean or corrupted), and the patches
    ``{site key: (positions, values (k, D))}`` applied to it."""

    prep: Prepared
    corrupted: bool
    patches: dict[str, tuple[list[int], torch.Tensor]] = field(default_factory=dict)


def _site_edit(site: Site, rows: list[Row], captured: dict | None):
    noise = [(b, row) for b, row in enumerate(rows) if site.key == "embed" and row.corrupted and row.prep.tracing]
    patches = [(b, row.patches[site.key]) for b, row in enumerate(rows) if site.key in row.patches]

    def edit(hidden: torch.Tensor):
        if site.vision and hidden.shape[0] != len(rows):
            raise XlvlmError(f"site {site.key}: its output holds {hidden.shape[0]} images for {len(rows)} prompts; "
                             f"patching inside the vision tower needs one image (no tiles) per sample")
        out = hidden.clone() if noise or patches else hidden
        if captured is not None and torch.is_grad_enabled() and not out.requires_grad and not site.vision:
            out = out.detach().requires_grad_()  # frozen weights: the gradient still reaches the states
        for b, row in noise:
            out[b, row.prep.image] = out[b, row.prep.image] + row.prep.noise.to(out.device, out.dtype)
        for b, (positions, values) in patches:
            out[b, positions] = values.to(out.device, out.dtype)
        if captured is not None:
            captured[site.key] = out
        return None if out is hidden else out
    return edit


def encode_rows(vlm, rows: list[Row], cache: dict | None = None):
    """The rows' batch (``vlm.encode``), taken from ``cache`` when the same prompts were encoded
    before: a pair's patched rows share their prompts, and the processor is slow next to a
    small model's forward pass."""
    use_corrupted = [row.corrupted and not row.prep.tracing for row in rows]
    key = tuple((id(row.prep), flag) for row, flag in zip(rows, use_corrupted))
    if cache is not None and key in cache:
        return cache[key]
    samples = [row.prep.pair.corrupted if flag else row.prep.pair.clean for row, flag in zip(rows, use_corrupted)]
    batch = vlm.encode(samples, answers=[row.prep.pair.answers[0] for row in rows])
    if cache is not None:
        cache[key] = batch
    return batch


def forward_rows(vlm, rows: list[Row], sites: list[Site], captured: dict | None = None,
                 grad: bool = False, cache: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the rows in one batch with every site's edit; returns the logits at each row's answer
    position (B, V) and its answer token ids (B, 2).

    captured: filled with each site's (possibly edited) states (B, t, D), kept in the graph
    when ``grad``. cache: see :func:`encode_rows`."""
    batch = encode_rows(vlm, rows, cache)
    noised = any(r.corrupted and r.prep.tracing for r in rows)
    if noised and all(s.key != "embed" for s in sites):
        sites = [_embed_site(vlm), *sites]  # the noise goes on the embeddings, patched there or not
    needed = [s for s in sites if captured is not None or any(s.key in r.patches for r in rows)
              or (s.key == "embed" and noised)]
    reads = [row.prep.length - 1 for row in rows]
    kwargs = {"use_cache": False}
    width = batch.input_ids.shape[1]
    if "logits_to_keep" in inspect.signature(vlm.model.forward).parameters:
        kwargs["logits_to_keep"] = width - min(reads)
    handles = []
    try:
        for site in needed:
            handles.append(attach(site.ref, _site_edit(site, rows, captured), first=True))
        with torch.set_grad_enabled(grad), torch.inference_mode(not grad):
            logits = vlm.model(**batch.inputs, **kwargs).logits
    finally:
        for handle in handles:
            handle.remove()
    shift = width - logits.shape[1]
    at = logits[torch.arange(len(rows), device=logits.device), torch.tensor(reads, device=logits.device) - shift]
    targets = torch.tensor([row.prep.targets for row in rows], device=logits.device)
    return at, targets


def read_metric(vlm, rows: list[Row], sites: list[Site], metric: str, captured: dict | None = None,
                grad: bool = False, cache: dict | None = None) -> torch.Tensor:
    """The metric (B,) of the rows run by :func:`forward_rows`."""
    at, targets = forward_rows(vlm, rows, sites, captured, grad, cache)
    return metric_values(at, targets, metric)


def clean_run(vlm, preps: list[Prepared], sites: list[Site], metric: str, noise: float, seed: int) -> torch.Tensor:
    """The clean rows' metric (B,); keeps each prep's clean states at every site (and the
    embeddings), and makes the tracing preps' noise."""
    embed = [s for s in sites if s.key == "embed"] or [_embed_site(vlm)]
    every = [*embed, *(s for s in sites if s.key != "embed")]
    captured: dict[str, torch.Tensor] = {}
    values = read_metric(vlm, [Row(p, False) for p in preps], every, metric, captured)
    for b, prep in enumerate(preps):
        for site in every:
            states = captured[site.key][b]
            prep.states[site.key] = (states if site.vision else states[:prep.length]).detach().clone()
        if prep.tracing:
            prep.noise = make_noise(prep, noise, seed)
    return values


def _embed_site(vlm) -> Site:
    from xlvlm.patching.sites import resolve_sites

    return resolve_sites(vlm, ["embed"])[0]
