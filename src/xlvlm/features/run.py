"""``xlvlm.extract``: run a VLM over samples and write the selected hidden states to a store.

Two modes:
  teacher forcing (default): one forward pass per batch over the templated prompt (plus the
    sample's reference ``answer`` when the selector needs a response), right padded (each
    sample's tokens are located from the attention mask, whatever side the processor padded),
    stopped after the deepest requested layer;
  generate: greedy generation, left padded; hooks record the prompt's states at prefill and
    each generated token's state at the step that feeds it back. Generation runs one step past
    ``max_new_tokens`` so that the last kept token has a state too; that extra token is not
    part of the prediction.

Everything selected is moved to the CPU once per batch; states never leave the device per
step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from xlvlm.data import check_images, check_samples
from xlvlm.data.images import image_digest
from xlvlm.errors import XlvlmError
from xlvlm.features.manifest import Manifest, StoreSettings
from xlvlm.features.selectors import Selection, Selector, TokenView, parse_selector
from xlvlm.features.store import FeatureStore, InMemoryStore, StoreWriter, json_ready, records_digest, remove_store
from xlvlm.hooks import record, require_vlm, resolve_layers
from xlvlm.progress import bar as progress_bar

log = logging.getLogger(__name__)

DEFAULT_SHARD_SAMPLES = 512


@dataclass
class BatchFeatures:
    """Selected rows of one batch: rows per layer (R_b, D) on the CPU, the batch-local sample
    index of each row (R_b,), and per-sample presence and prediction."""

    rows: dict[str, torch.Tensor]
    row_sample: torch.Tensor
    present: list[bool]
    predictions: list[str | None]
    texts: list[str]


def _gather(states: torch.Tensor, offset: int, selection: Selection | None, single_row: bool) -> torch.Tensor:
    """Rows of one sample from its layer states (T, D); ``offset`` maps sequence positions to
    state indices (left padding)."""
    if selection is None:
        return torch.full((1 if single_row else 0, states.shape[-1]), float("nan"), dtype=states.dtype, device=states.device)
    index = torch.tensor([offset + p for p in selection.positions], device=states.device)
    picked = states.index_select(0, index)
    return picked.float().mean(0, keepdim=True).to(states.dtype) if selection.mean else picked


def _views(vlm, sequences: list[list[int]], prompt_lengths: list[int], image_id: int | None) -> list[TokenView]:
    special = frozenset(vlm.tokenizer.all_special_ids) | frozenset(vlm.eos_token_ids)
    views = []
    for tokens, prompt_length in zip(sequences, prompt_lengths):
        image_positions = [i for i, t in enumerate(tokens[:prompt_length]) if t == image_id] if image_id is not None else []
        views.append(TokenView(tokens, prompt_length, image_positions, vlm.tokenizer, special))
    return views


def _select_batch(states: dict[str, torch.Tensor], views: list[TokenView], offsets: list[int],
                  selector: Selector) -> tuple[dict[str, torch.Tensor], torch.Tensor, list[bool]]:
    single_row = selector.rows_per_sample == 1
    selections = [selector.select(view) for view in views]
    rows = {}
    for key, layer_states in states.items():
        parts = [_gather(layer_states[b], offsets[b], sel, single_row) for b, sel in enumerate(selections)]
        rows[key] = torch.cat(parts).cpu()
    counts = [len(sel.positions) if sel is not None and not sel.mean else (1 if sel is not None or single_row else 0)
              for sel in selections]
    row_sample = torch.repeat_interleave(torch.arange(len(views)), torch.tensor(counts, dtype=torch.long))
    return rows, row_sample, [sel is not None for sel in selections]


def extract_batch_teacher_forced(vlm, samples: Sequence[dict], layers, selector: Selector) -> BatchFeatures:
    """Forward one batch (right padded) and select rows."""
    answers = None
    if selector.needs_response:
        missing = [s["id"] for s in samples if not s.get("answer")]
        if missing:
            raise XlvlmError(f"sample {missing[0]!r} has no 'answer': selector {selector.spec!r} needs a response; "
                             f"add answers for teacher forcing or pass --generate")
        answers = [str(s["answer"]) for s in samples]
    batch = vlm.encode(samples, answers=answers, padding_side="right")
    with record(vlm, layers, stop_early=True) as recording:
        vlm.forward(batch)
    states = {key: recording.stacked(key) for key in recording.outputs}
    ids = batch.input_ids.tolist()
    sequences = [row[o:o + n] for row, o, n in zip(ids, batch.offsets, batch.lengths)]  # either padding side
    views = _views(vlm, sequences, batch.prompt_lengths, vlm.image_token_id)
    rows, row_sample, present = _select_batch(states, views, batch.offsets, selector)
    return BatchFeatures(rows, row_sample, present, [None] * len(samples), batch.texts)


def extract_batch_generated(vlm, samples: Sequence[dict], layers, selector: Selector,
                            max_new_tokens: int) -> BatchFeatures:
    """Generate for one batch (left padded), recording every step, and select rows."""
    with record(vlm, layers) as recording:
        generation = vlm.generate_batch(samples, max_new_tokens=max_new_tokens + 1)
    batch = generation.batch
    width = batch.input_ids.shape[1]
    eos = vlm.eos_token_ids
    # What max_new_tokens would have produced; the extra step only gave the last token a state.
    kept = [[t for t in tokens[:max_new_tokens] if t not in eos] for tokens in generation.new_tokens]
    predictions = [t.strip() for t in vlm.tokenizer.batch_decode(
        [g[:max_new_tokens] for g in generation.new_tokens], skip_special_tokens=True)]
    states = {key: recording.stacked(key) for key in recording.outputs}
    available = next(iter(states.values())).shape[1]
    prompt_ids = batch.input_ids.tolist()
    sequences = [prompt_ids[b][batch.offsets[b]:width] + kept[b] for b in range(len(samples))]
    if any(batch.offsets[b] + len(seq) > available for b, seq in enumerate(sequences)):
        raise RuntimeError("generation recorded fewer steps than tokens kept; a model family's generate "
                           "does not call the decoder once per token")
    views = _views(vlm, sequences, [width - o for o in batch.offsets], vlm.image_token_id)
    rows, row_sample, present = _select_batch(states, views, batch.offsets, selector)
    return BatchFeatures(rows, row_sample, present, predictions, batch.texts)


def _usable(samples: list[dict], skip_bad: bool) -> tuple[list[dict], list[dict]]:
    """Split a batch into samples whose image opens and skipped ones (only with skip_bad)."""
    if not skip_bad:
        return samples, []
    return check_images(samples, skip_bad=True)


def _metadata(sample: dict, text: str, present: bool, prediction: str | None, n_rows: int) -> dict:
    meta = dict(sample)
    meta["text"] = text
    meta["present"] = present
    meta["rows"] = n_rows
    if prediction is not None:
        meta["prediction"] = prediction
    return meta


# Stand-ins for a prompt and an answer: what the model's template makes of them is the store's
# prompt format (a changed chat template changes every sample's text).
_PROMPT_PROBE, _ANSWER_PROBE = "<xlvlm:prompt>", "<xlvlm:answer>"


def store_settings(vlm, keys: list[str], selector: Selector, generate: bool, max_new_tokens: int) -> StoreSettings:
    """What identifies a store's extraction: a resume must match it all."""
    teacher_forcing = (not generate) and selector.needs_response
    return StoreSettings(
        model=vlm.name, family=vlm.family, num_layers=vlm.num_layers, hidden_size=vlm.hidden_size, layers=keys,
        selector=selector.spec, rows_per_sample=selector.rows_per_sample, teacher_forcing=teacher_forcing,
        generation={"max_new_tokens": max_new_tokens, "do_sample": False} if generate else None,
        dtype=str(vlm.dtype).replace("torch.", ""),
        prompt_format=vlm.format_prompt(_PROMPT_PROBE, _ANSWER_PROBE if teacher_forcing else None)[0])


def _image_sha256(image) -> str | None:
    """SHA-256 of an image's bytes (or of an in-memory PIL image's pixels); None when it cannot
    be read (skipped with --skip-bad). See :func:`xlvlm.data.images.image_digest`."""
    return image_digest(image)


def input_digest(samples: Sequence[dict]) -> str:
    """The resume key of an extraction's input: every field of every sample (id, image path,
    prompt, answer, ...) and the SHA-256 of its image file, in order, JSON-encoded and
    length-prefixed (so no two different inputs share it). Reads every image once."""
    return records_digest([json_ready(sample), _image_sha256(sample.get("image"))] for sample in samples)


class MemoryWriter:
    """Collects shards in memory (``extract`` without ``out``), with StoreWriter's calls."""

    def __init__(self, settings: StoreSettings):
        self.settings = settings
        self.parts: list[tuple[dict, torch.Tensor]] = []
        self.samples: list[dict] = []
        self.skipped: list[dict] = []
        self.manifest = Manifest(settings)  # no shards: nothing stored before this run

    def write_shard(self, rows: dict, row_sample: torch.Tensor, samples: list[dict], skipped: list[dict]) -> None:
        self.parts.append((rows, row_sample))
        self.samples.extend(samples)
        self.skipped.extend(json_ready(s) for s in skipped)

    def finish(self) -> InMemoryStore:
        keys = self.settings.layers
        if self.parts:
            features = {k: torch.cat([rows[k] for rows, _ in self.parts]) for k in keys}
            row_sample = torch.cat([rs for _, rs in self.parts])
        else:
            features = {k: torch.empty(0, self.settings.hidden_size) for k in keys}
            row_sample = torch.empty(0, dtype=torch.long)
        return InMemoryStore(features, row_sample, self.samples, self.settings, self.skipped)


def _check_sizes(batch_size: int, shard_samples: int, generate: bool, max_new_tokens: int) -> None:
    if batch_size < 1:
        raise XlvlmError(f"batch size must be >= 1, not {batch_size}")
    if shard_samples < 1:
        raise XlvlmError(f"samples per shard must be >= 1, not {shard_samples}")
    if generate and max_new_tokens < 1:
        raise XlvlmError(f"--max-new-tokens must be >= 1, not {max_new_tokens}")


class _PendingShard:
    """The rows and sample records recorded since the last shard, handed to the writer by
    :meth:`flush` (a shard holds its samples' rows, metadata and skipped samples)."""

    def __init__(self, writer, keys: list[str], hidden_size: int, in_memory: bool):
        self.writer, self.hidden_size, self.in_memory = writer, hidden_size, in_memory
        self.rows: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
        self.row_sample: list[torch.Tensor] = []
        self.meta: list[dict] = []
        self.skipped: list[dict] = []
        self.written = writer.manifest.n_stored  # samples in the shards written so far

    def __len__(self) -> int:
        return len(self.meta) + len(self.skipped)

    def add(self, chunk: list[dict], result: BatchFeatures) -> None:
        """A batch's rows (numbered after every sample before it) and each sample's metadata."""
        base = self.written + len(self.meta)
        for key, rows in self.rows.items():
            rows.append(result.rows[key])
        self.row_sample.append(result.row_sample + base)
        counts = torch.bincount(result.row_sample, minlength=len(chunk)).tolist()
        for b, sample in enumerate(chunk):
            meta = _metadata(sample, result.texts[b], result.present[b], result.predictions[b], counts[b])
            self.meta.append(meta if self.in_memory else json_ready(meta))

    def flush(self) -> None:
        if not self.meta and not self.skipped:
            return
        rows = {k: torch.cat(v) if v else torch.empty(0, self.hidden_size) for k, v in self.rows.items()}
        row_sample = torch.cat(self.row_sample) if self.row_sample else torch.empty(0, dtype=torch.long)
        self.writer.write_shard(rows, row_sample, list(self.meta), list(self.skipped))
        self.written += len(self.meta)
        for chunks in self.rows.values():
            chunks.clear()
        self.row_sample.clear()
        self.meta.clear()
        self.skipped.clear()


# params: the documented one-call API (README, docs/api.md); the manifest records them
def extract(vlm, samples: Sequence[dict], layers=("final",), select: str | Selector = "last-prompt",
            out: str | Path | None = None, generate: bool = False, max_new_tokens: int = 20,
            batch_size: int = 8, shard_samples: int = DEFAULT_SHARD_SAMPLES, skip_bad: bool = False,
            progress: bool = True, overwrite: bool = False, desc: str | None = None) -> FeatureStore | InMemoryStore:
    """Record hidden states of ``samples`` at ``layers`` into a FeatureStore at ``out``, or,
    without ``out``, into an :class:`InMemoryStore` (same reading interface; ``.save(folder)``).

    samples: dicts with ``id``, ``image`` (a path or a PIL image), ``prompt`` (+ ``answer`` for
    teacher-forced response selectors). layers: ints (negatives from the end), "final", or
    module names. With ``out``, rerunning with the same settings and samples (every field, and
    the image files' bytes) resumes a partial store and returns a complete one as is; anything
    else is refused unless ``overwrite=True``, which deletes the store at ``out`` (only a feature
    store) and extracts afresh. ``desc`` labels the progress bar (default: "extract" and the folder's name).
    """
    require_vlm(vlm, "xlvlm.extract")
    _check_sizes(batch_size, shard_samples, generate, max_new_tokens)
    samples = check_samples(samples)
    if not samples:
        raise XlvlmError("no samples to extract")
    selector = parse_selector(select) if isinstance(select, str) else select
    keys = [ref.key for ref in resolve_layers(vlm, layers)]
    settings = store_settings(vlm, keys, selector, generate, max_new_tokens)
    if out is None:
        writer = MemoryWriter(settings)
    else:
        if overwrite:
            remove_store(out)
        writer = StoreWriter(out, settings, [s["id"] for s in samples], input_digest(samples))
    if writer.manifest.complete:
        log.info("store %s is complete; reusing it", out)
        return FeatureStore(out)
    start = writer.manifest.n_done  # samples stored or skipped before: where a resume continues
    if start:
        log.info("resuming %s after %d of %d samples", out, start, len(samples))
    desc = desc or ("extract " + Path(out).name if out is not None else "extract")
    bar = progress_bar(total=len(samples), initial=start, desc=desc, unit="sample", enabled=progress)
    pending = _PendingShard(writer, keys, vlm.hidden_size, in_memory=out is None)
    try:
        for first in range(start, len(samples), batch_size):
            chunk, skipped = _usable(samples[first:first + batch_size], skip_bad)
            pending.skipped.extend(skipped)
            if chunk:
                if generate:
                    pending.add(chunk, extract_batch_generated(vlm, chunk, keys, selector, max_new_tokens))
                else:
                    pending.add(chunk, extract_batch_teacher_forced(vlm, chunk, keys, selector))
            bar.update(len(chunk) + len(skipped))
            if len(pending) >= shard_samples:
                pending.flush()
        pending.flush()
    except KeyboardInterrupt:
        pending.flush()  # keep the finished batches; the run resumes after them
        raise
    finally:
        bar.close()
    if out is None:
        return writer.finish()
    writer.finish()
    return FeatureStore(out)
