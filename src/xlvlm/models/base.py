"""The VLM adapter: one object that hides a model family's quirks from every stage above it.

A stage never touches ``model.model.language_model`` or a processor's calling convention; it
asks the adapter for the decoder layers, the final norm, the LM head, a padded batch of inputs,
and where each sample's prompt and image tokens are.

Tokens: the processor's own ``apply_chat_template(..., tokenize=True)`` makes them, as
transformers documents, so BOS, image-token expansion and per-sample image lists are what the
family's processor does for one sample.

Padding: teacher-forced batches are right-padded, so every real token keeps the position ids it
has at batch size 1 and, under the causal mask, never sees a pad. Generation batches are
left-padded (HF ``generate`` derives position ids from the attention mask). The side is asked of
the processor explicitly (some default to left) and read back from the attention mask.
"""

from __future__ import annotations

import inspect
import math
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from xlvlm.data.images import load_image
from xlvlm.data.samples import check_samples
from xlvlm.errors import XlvlmError


FAMILIES_EXTRA_HINT = "install what model families need at run time: pip install 'xlvlm[families]'"
REMOTE_CODE_HINT = "pass --trust-remote-code (Python: load_vlm(..., trust_remote_code=True)) if you trust its code"

# (model, samples, input ids shape) of the batch VLM.generate_batch is generating, in this thread.
_IN_FLIGHT: ContextVar = ContextVar("xlvlm_batch_in_flight", default=None)


def batch_in_flight(model: nn.Module) -> tuple[tuple[dict, ...], tuple[int, ...]] | None:
    """(samples, input ids shape) of the batch that :meth:`VLM.generate_batch` is generating on
    ``model`` (a VLM's ``.model``) now, in this thread; None outside one. For hooks whose work
    depends on which sample each row is (they check the shape against the call they see)."""
    flight = _IN_FLIGHT.get()
    return None if flight is None or flight[0] is not model else flight[1:]


class StopForward(Exception):
    """Raised by a recording hook to end a forward pass once the deepest needed layer ran."""


@dataclass
class Batch:
    """Processor outputs for B samples, padded to T tokens.

    inputs: tensors for ``model(**inputs)`` on the model's device (input_ids (B, T), ...).
    offsets: index of each sample's first real token (non-zero only with left padding).
    lengths: number of real tokens per sample.
    prompt_lengths: real tokens up to and including the generation prompt ("ASSISTANT:"),
        i.e. the index (relative to ``offsets``) of the first answer/generated token.
    texts: the exact templated strings given to the processor.
    """

    inputs: dict[str, torch.Tensor]
    offsets: list[int]
    lengths: list[int]
    prompt_lengths: list[int]
    texts: list[str]
    padding_side: str = "right"

    @property
    def input_ids(self) -> torch.Tensor:
        return self.inputs["input_ids"]

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class Generation:
    """Greedy generation results for B samples.

    sequences: (B, T + N) prompt + generated ids, left padded as in the batch.
    new_tokens: per sample, the generated ids, cut at (and including) the first EOS.
    texts: decoded generated text (no special tokens, stripped).
    step_logits: with ``keep_logits``, per sample a (len(new_tokens), V) float tensor: the
        model's raw next-token logits at each generated step (before any logits processor).
    """

    batch: Batch
    sequences: torch.Tensor
    new_tokens: list[list[int]]
    texts: list[str]
    step_logits: list[torch.Tensor] | None = field(default=None, repr=False)


class VLM:
    """A loaded vision-language model with the structure every stage needs.

    Attributes: ``model`` (the HF model), ``processor``, ``name`` (hub id or folder it came
    from), ``family``. Subclasses (one module per family, registered in
    :mod:`xlvlm.models.registry`) override what their family does differently: the prompt
    format (``_encode_inputs``), where a layer is read (``residual_site``), the image tokens'
    layout (``image_grid``), inputs of appended tokens (``_appended_value``, ``extend_inputs``).
    """

    def __init__(self, model: nn.Module, processor, name: str):
        self.model = model
        self.processor = processor
        self.name = name

    @classmethod
    def load(cls, name: str, config, device: torch.device, dtype, trust_remote_code: bool = False) -> "VLM":
        """Load weights and processor; families with special loading override this."""
        return load_with_auto_classes(cls, name, config, device, dtype, trust_remote_code)

    # ---- structure -------------------------------------------------------------------------
    @property
    def family(self) -> str:
        """The config's ``model_type`` (the registry key)."""
        return getattr(self.model.config, "model_type", "generic")

    @property
    def tokenizer(self):
        return getattr(self.processor, "tokenizer", self.processor)

    @property
    def decoder_layers(self) -> nn.ModuleList:
        """The language model's decoder blocks, in order."""
        decoder = self.model.get_decoder()
        layers = getattr(decoder, "layers", None)
        if layers is None:
            raise XlvlmError(f"{self.name}: cannot find decoder layers (model.get_decoder().layers)")
        return layers

    @property
    def final_norm(self) -> nn.Module:
        return self.model.get_decoder().norm

    @property
    def lm_head(self) -> nn.Module:
        return self.model.get_output_embeddings()

    def residual_site(self, index: int) -> tuple[nn.Module, str]:
        """Where layer ``index`` (the residual stream after block ``index``) is read and steered:
        (module, "output") or (module, "input"). Default: the block's own output."""
        return self.decoder_layers[index], "output"

    @property
    def num_layers(self) -> int:
        return len(self.decoder_layers)

    @property
    def hidden_size(self) -> int:
        return self.lm_head.weight.shape[1]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def image_token_id(self) -> int | None:
        config = self.model.config
        for key in ("image_token_id", "image_token_index"):
            value = getattr(config, key, None)
            if value is not None:
                return int(value)
        return None

    @property
    def eos_token_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}

    def unembed(self, vectors: torch.Tensor, through_norm: bool = True) -> torch.Tensor:
        """Logits of directions in the residual stream: lm_head(final_norm(v)). (K, D) -> (K, V)."""
        vectors = vectors.to(self.device, self.dtype)
        with torch.no_grad():
            if through_norm:
                vectors = self.final_norm(vectors)
            return self.lm_head(vectors).float()

    # ---- prompts ---------------------------------------------------------------------------
    @property
    def chat_template(self) -> str | None:
        return getattr(self.processor, "chat_template", None) or getattr(self.tokenizer, "chat_template", None)

    def conversation(self, prompt: str, image=None, answer: str | None = None) -> list[dict]:
        """A user turn (the image, then the prompt) and, for teacher forcing, the assistant's answer."""
        picture = {"type": "image"} if image is None else {"type": "image", "image": image}
        messages = [{"role": "user", "content": [picture, {"type": "text", "text": prompt}]}]
        if answer is not None:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        return messages

    def format_prompt(self, prompt: str, answer: str | None = None) -> tuple[str, str]:
        """The templated text of one sample: (text, prompt_part).

        ``prompt_part`` ends with the generation prompt; with an ``answer``, ``text`` is the
        conversation with the answer as the assistant turn, otherwise it equals ``prompt_part``.
        """
        self._require_template()
        prompt_part = self.processor.apply_chat_template(self.conversation(prompt), add_generation_prompt=True,
                                                         tokenize=False)
        if answer is None:
            return prompt_part, prompt_part
        return self.processor.apply_chat_template(self.conversation(prompt, answer=answer), tokenize=False), prompt_part

    def _require_template(self) -> None:
        if not self.chat_template:
            raise XlvlmError(f"{self.name}: the processor has no chat template; save one with the processor")

    # ---- batching --------------------------------------------------------------------------
    def _tokenize(self, conversations: list[list[dict]], add_generation_prompt: bool,
                  padding_side: str) -> tuple[dict, list[str]]:
        """transformers' own path: ``processor.apply_chat_template(..., tokenize=True)``.

        The processor renders the template, decides whether the tokenizer adds BOS (not when the
        rendered text already starts with it), takes the images as one list per sample and pads
        to ``padding_side``. Returns (processor outputs, rendered texts).
        """
        self._require_template()
        texts = self.processor.apply_chat_template(conversations, add_generation_prompt=add_generation_prompt,
                                                   tokenize=False)
        inputs = self._call_processor(lambda: self.processor.apply_chat_template(
            conversations, add_generation_prompt=add_generation_prompt, tokenize=True, return_dict=True,
            return_tensors="pt", processor_kwargs={"padding": True, "padding_side": padding_side}), len(texts))
        return inputs, list(texts)

    def _call_processor(self, call, batch_size: int) -> dict:
        """Run a processor call; a batch it rejects is a one-line error naming family and size."""
        try:
            return dict(call())
        except (ValueError, TypeError, IndexError) as exc:
            hint = "; try --batch-size 1" if batch_size > 1 else ""
            raise XlvlmError(f"{self.family}: the processor rejects a batch of {batch_size} sample(s) "
                             f"({_first_line(exc)}){hint}") from exc

    def _encode_inputs(self, samples: Sequence[dict], images: list, answers: list[str | None],
                       padding_side: str) -> tuple[dict, list[str], list[int] | None]:
        """Processor outputs, texts, and (teacher forcing) each sample's prompt length in tokens.

        Families with their own prompt format override this. The prompt length comes from
        tokenizing the prompt alone (same path) and comparing it with the full sequence.
        """
        if all(a is None for a in answers):
            inputs, texts = self._tokenize([self.conversation(s["prompt"], im) for s, im in zip(samples, images)],
                                           True, padding_side)
            return inputs, texts, None
        if any(a is None for a in answers):
            raise XlvlmError("teacher forcing needs an answer for every sample of a batch")
        inputs, texts = self._tokenize([self.conversation(s["prompt"], im, a)
                                        for s, im, a in zip(samples, images, answers)], False, padding_side)
        prompts, _ = self._tokenize([self.conversation(s["prompt"], im) for s, im in zip(samples, images)],
                                    True, padding_side)
        # The answer starts where the full sequence leaves the prompt tokenized alone. Usually the
        # prompt is a prefix; a template that writes the assistant header differently with
        # content than as the generation prompt (e.g. "assistant \n" against "assistant\n")
        # makes the response start at the first differing token.
        prompt_lengths = [_common_prefix(row, prompt_row)
                          for row, prompt_row in zip(_real_rows(inputs), _real_rows(prompts))]
        return inputs, texts, prompt_lengths

    def encode(self, samples: Sequence[dict], answers: Sequence[str | None] | None = None,
               padding_side: str = "right") -> Batch:
        """Template, tokenize and pad samples (dicts with ``image``, ``prompt``) into a Batch.

        padding_side is asked of the processor; where each sample's tokens sit is read back
        from the attention mask, so a processor that pads otherwise is still read right.
        """
        samples = check_samples(samples, ids=False)  # running a model needs no ids
        answers = list(answers) if answers is not None else [None] * len(samples)
        images = [load_image(s["image"]) for s in samples]
        inputs, texts, prompt_lengths = self._encode_inputs(samples, images, answers, padding_side)
        mask = inputs.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(inputs["input_ids"])
            inputs["attention_mask"] = mask
        offsets, lengths = _offsets_and_lengths(mask)
        side = "left" if any(o > 0 for o in offsets) else padding_side
        if side != padding_side:
            # Real tokens would sit at other positions than at batch size 1 (most models number
            # positions from the start of the row when no position ids are given).
            raise XlvlmError(f"{self.family}: the processor padded left although right padding was asked; "
                             f"use --batch-size 1")
        if prompt_lengths is None:
            prompt_lengths = list(lengths)
        inputs = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in inputs.items()}
        for key, value in inputs.items():
            if torch.is_tensor(value) and value.is_floating_point():
                inputs[key] = value.to(self.dtype)
        return Batch(inputs, offsets, lengths, prompt_lengths, list(texts), side)

    def _appended_value(self, key: str) -> int:
        """The value a per-token input takes for tokens appended after the prompt (generated text)."""
        return 1 if key == "attention_mask" else 0

    def extend_inputs(self, batch: Batch, new_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Inputs for one forward pass over each sample's tokens followed by ``new_ids`` (B, N).

        Used to re-read a generation in a single pass. The batch must be left padded (as in
        generation) or unpadded, so the new tokens follow each sample's last real token.
        Per-token inputs grow with the ids: the attention mask with ones, any other (B, T)
        tensor (``mm_token_type_ids``, ``token_type_ids``, ...) with ``_appended_value(key)``
        (0, i.e. text, unless the family says otherwise).
        """
        if batch.padding_side == "right" and len(set(batch.lengths)) > 1:
            raise XlvlmError("extend_inputs needs a left-padded batch: right padding would sit between prompt and new tokens")
        ids = batch.input_ids
        new_ids = new_ids.to(ids.device, ids.dtype)
        inputs = {}
        for key, value in batch.inputs.items():
            if key == "input_ids":
                value = torch.cat([ids, new_ids], dim=1)
            elif torch.is_tensor(value) and value.shape == ids.shape:
                fill = torch.full(new_ids.shape, self._appended_value(key), dtype=value.dtype, device=value.device)
                value = torch.cat([value, fill], dim=1)
            inputs[key] = value
        return inputs

    def image_mask(self, batch: Batch) -> torch.Tensor:
        """(B, T) bool: positions holding image tokens."""
        if self.image_token_id is None:
            raise XlvlmError(f"{self.name}: the model config names no image token id; the 'image' selector needs one")
        return batch.input_ids == self.image_token_id

    def image_grid(self, batch: Batch, index: int) -> tuple[int, int, int] | None:
        """How sample ``index``'s image tokens lie on the image: (skip, rows, cols) when the
        first ``skip`` are extra (a class token) and the rest a rows x cols patch grid in
        row-major order; None when they form no grid (latents, tiles, cross-attention).

        Default: a square grid, with or without one leading extra token (LLaVA-1.5, Gemma 3).
        """
        n = int(self.image_mask(batch)[index].sum())
        for skip in (0, 1):
            side = math.isqrt(max(n - skip, 0))
            if side > 0 and side * side == n - skip:
                return skip, side, side
        return None

    # ---- running ---------------------------------------------------------------------------
    def forward(self, batch: Batch) -> None:
        """A teacher-forced forward pass (outputs are read by hooks, see ``xlvlm.hooks``)."""
        with torch.inference_mode():
            try:
                self.model(**batch.inputs, use_cache=False)
            except StopForward:
                pass

    def _generate_ids(self, batch: Batch, max_new_tokens: int, step_logits: list | None = None) -> torch.Tensor:
        """Greedy ids (B, T + N); appends each step's raw logits (B, V) to ``step_logits`` when given."""
        tokenizer = self.tokenizer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_token_ids)
        out = self.model.generate(**batch.inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                  pad_token_id=pad, return_dict_in_generate=True,
                                  output_logits=step_logits is not None)
        if step_logits is not None:
            step_logits.extend(out.logits)
        return out.sequences

    def generate_batch(self, samples: Sequence[dict], max_new_tokens: int = 20,
                       keep_logits: bool = False) -> Generation:
        """Greedy generation for one batch (left padded)."""
        batch = self.encode(samples, padding_side="left")
        steps = [] if keep_logits else None
        token = _IN_FLIGHT.set((self.model, tuple(samples), tuple(batch.input_ids.shape)))
        try:
            with torch.inference_mode():
                sequences = self._generate_ids(batch, max_new_tokens, steps)
        finally:
            _IN_FLIGHT.reset(token)
        width = batch.input_ids.shape[1]
        eos = self.eos_token_ids
        new_tokens = []
        for row in sequences[:, width:].tolist():
            cut = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
            new_tokens.append(row[:cut])
        texts = [t.strip() for t in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
        step_logits = None
        if steps is not None:
            stacked = torch.stack([step.float() for step in steps], dim=1)  # (B, N, V)
            step_logits = [stacked[b, :len(tokens)].cpu() for b, tokens in enumerate(new_tokens)]
        return Generation(batch, sequences, new_tokens, texts, step_logits)

    def predict(self, samples: Sequence[dict], max_new_tokens: int = 20, batch_size: int = 8,
                progress: bool = False, top_k: int = 0, desc: str = "generate", on_batch=None) -> list[dict]:
        """The generation loop: greedy predictions for ``samples``, batched, in input order.

        Returns records ``{**sample, "prediction": text}`` (the lines ``xlvlm evaluate`` reads);
        with ``top_k`` > 0 each also has ``"top_k"``: per generated step, the k most probable
        next tokens ``{"token", "id", "prob"}`` (softmax of the raw logits), best first.
        ``on_batch`` receives each batch's records as soon as they exist (e.g. to write them).
        ``progress``: a labelled bar on a terminal, elsewhere a line every 30 s of long work.
        Steering is the caller's: generate inside ``sv.apply(vlm)``.
        """
        from xlvlm.progress import Heartbeat, bar

        samples = check_samples(samples, ids=False)  # a string or one dict: a one-line error saying what to pass
        check_generation_settings(batch_size, max_new_tokens)
        beat = Heartbeat(desc, total=len(samples), unit="samples", enabled=progress)
        records: list[dict] = []
        for start in bar(range(0, len(samples), batch_size), desc=desc, unit="batch", enabled=progress,
                          leave=False):
            chunk = samples[start:start + batch_size]
            generation = self.generate_batch(chunk, max_new_tokens, keep_logits=top_k > 0)
            batch = [dict(sample, prediction=text) for sample, text in zip(chunk, generation.texts)]
            if top_k > 0:
                for record, logits in zip(batch, generation.step_logits):
                    record["top_k"] = self._top_tokens(logits, top_k)
            if on_batch is not None:
                on_batch(batch)
            records.extend(batch)
            beat.update(len(records))
        return records

    def _top_tokens(self, logits: torch.Tensor, k: int) -> list[list[dict]]:
        """(N, V) logits -> per step the k most probable tokens ``{"token", "id", "prob"}``."""
        probs, ids = logits.float().softmax(dim=-1).topk(min(k, logits.shape[-1]), dim=-1)
        return [[{"token": self.tokenizer.decode([i]), "id": i, "prob": p} for i, p in zip(row_ids, row_probs)]
                for row_ids, row_probs in zip(ids.tolist(), probs.tolist())]

    def generate(self, samples: Sequence[dict], max_new_tokens: int = 20, batch_size: int = 8,
                 progress: bool = False, return_scores: bool = False, top_k: int = 5) -> list:
        """A thin alias of :meth:`predict` (the one door): the generated texts in input order, or,
        with ``return_scores=True``, predict's records with ``top_k`` per step."""
        if return_scores and top_k < 1:
            raise XlvlmError(f"top_k must be at least 1 with return_scores=True, not {top_k}")
        records = self.predict(samples, max_new_tokens, batch_size, progress, top_k=top_k if return_scores else 0)
        return records if return_scores else [r["prediction"] for r in records]

    # ---- scoring ---------------------------------------------------------------------------
    def score(self, samples: Sequence[dict], candidates: Sequence[str] | Sequence[Sequence[str]],
              batch_size: int = 8) -> torch.Tensor:
        """log P(candidate | sample) for every sample and candidate answer: (N, C) float32.

        Teacher forcing through the same encoding as ``encode(samples, answers=...)`` (the
        template's assistant turn holds the candidate): the sum over the candidate's tokens of
        the log-probability of each given the tokens before it. The template's closing tokens
        (e.g. end of turn) are not counted. candidates: one list for all samples, or one list
        per sample (the same length C for each). Works under steering (``sv.apply(vlm)``).
        """
        samples = check_samples(samples, ids=False)  # scoring, like generating, needs no ids
        per_sample = _candidates_per_sample(candidates, len(samples))
        if batch_size < 1:
            raise XlvlmError(f"batch size must be at least 1, not {batch_size}")
        closing = self._closing_tokens(samples[0])
        # One row per (sample, candidate), each with its own id.
        rows = [(dict(s, id=f"{n}/{c}"), answer) for n, (s, answers) in enumerate(zip(samples, per_sample))
                for c, answer in enumerate(answers)]
        scores = []
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            scores.extend(self._score_batch([s for s, _ in chunk], [a for _, a in chunk], closing))
        return torch.tensor(scores, dtype=torch.float32).reshape(len(samples), -1)

    def logit_difference(self, samples: Sequence[dict], first: str, second: str, batch_size: int = 8) -> torch.Tensor:
        """log P(first) - log P(second) per sample: (N,). For single-token answers this is the
        difference of the two tokens' logits (the softmax normaliser cancels)."""
        scores = self.score(samples, [first, second], batch_size=batch_size)
        return scores[:, 0] - scores[:, 1]

    def _closing_tokens(self, sample: dict) -> list[int]:
        """The ids the template puts after an answer (end of turn, ...): the common tail of the
        sample encoded with two answers whose own tokens differ (a tokenizer may map two probes
        to the same unknown token: then the next pair is tried)."""
        for probes in (("0", "1"), ("yes", "no"), ("a", "b"), ("x", "y"), ("A", "B")):
            a, b = (self.encode([sample], answers=[probe]) for probe in probes)
            row_a, row_b = _real_rows(a.inputs)[0], _real_rows(b.inputs)[0]
            limit = min(len(row_a) - a.prompt_lengths[0], len(row_b) - b.prompt_lengths[0])
            n = 0
            while n < limit and row_a[-1 - n] == row_b[-1 - n]:
                n += 1
            if n < limit:  # the answers' tokens differ before the common tail: it is the template's
                return row_a[len(row_a) - n:]
        raise XlvlmError(f"{self.family}: cannot tell where an answer ends in the template; score needs a template "
                         f"that writes the answer as it is")

    def _score_batch(self, samples: list[dict], answers: list[str], closing: list[int]) -> list[float]:
        batch = self.encode(samples, answers=answers, padding_side="right")
        rows = _real_rows(batch.inputs)
        spans = []
        for row, start, answer in zip(rows, batch.prompt_lengths, answers):
            end = len(row) - len(closing)
            if row[end:] != closing or end <= start:
                raise XlvlmError(f"{self.family}: cannot locate the tokens of answer {answer!r} in the templated "
                                 f"sequence (the template's closing tokens differ); score answers that the template "
                                 f"writes as they are")
            spans.append((start, end))
        first = min(start for start, _ in spans) - 1  # the position that predicts the earliest answer token
        width = batch.input_ids.shape[1]
        kwargs = {"use_cache": False}
        if "logits_to_keep" in inspect.signature(self.model.forward).parameters:
            kwargs["logits_to_keep"] = width - first  # only the positions that predict answer tokens
        with torch.inference_mode():
            logits = self.model(**batch.inputs, **kwargs).logits
        shift = width - logits.shape[1]  # logits[:, j] belongs to position j + shift
        out = []
        for b, ((start, end), row) in enumerate(zip(spans, rows)):
            offset = batch.offsets[b]
            positions = torch.arange(offset + start - 1, offset + end - 1, device=logits.device) - shift
            log_probs = logits[b, positions].float().log_softmax(dim=-1)
            targets = torch.tensor(row[start:end], device=logits.device)
            out.append(float(log_probs.gather(1, targets[:, None]).sum()))
        return out

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, layers={self.num_layers}, "
                f"hidden_size={self.hidden_size}, device={self.device}, dtype={self.dtype})")


def check_generation_settings(batch_size: int, max_new_tokens: int) -> None:
    if batch_size < 1 or max_new_tokens < 1:
        raise XlvlmError(f"batch size and max new tokens must be at least 1, not {batch_size} and {max_new_tokens}")


def _candidates_per_sample(candidates, n: int) -> list[list[str]]:
    """One list of answers for every sample, or one per sample (the same count each)."""
    if isinstance(candidates, str) or not isinstance(candidates, Sequence) or not candidates:
        raise XlvlmError('candidates must be a non-empty list of answers (e.g. ["yes", "no"]), or one list per sample')
    if all(isinstance(c, str) for c in candidates):
        return [list(candidates)] * n
    if len(candidates) != n or not all(isinstance(c, Sequence) and not isinstance(c, str) and c
                                       and all(isinstance(a, str) for a in c) for c in candidates):
        raise XlvlmError(f"candidates: give one list of answer strings, or one non-empty list per sample ({n})")
    if len({len(c) for c in candidates}) != 1:
        raise XlvlmError("candidates: every sample needs the same number of answers (the result is (N, C))")
    return [list(c) for c in candidates]


def grid_from_thw(batch: Batch, index: int, merge: int) -> tuple[int, int, int]:
    """(0, rows, cols) of a Qwen-style image: ``image_grid_thw`` (images, 3) counts patches
    before the ``merge`` x ``merge`` merger, one image per sample, one frame."""
    _, height, width = (int(v) for v in batch.inputs["image_grid_thw"][index])
    return 0, height // merge, width // merge


def grid_from_image_sizes(batch: Batch, index: int, patch: int) -> tuple[int, int, int]:
    """(0, rows, cols) of a Pixtral-style image: ``image_sizes`` (images, 2) in pixels after
    resizing, one token per ``patch`` x ``patch`` (the row-break tokens are not image tokens)."""
    height, width = (int(v) for v in batch.inputs["image_sizes"][index])
    return 0, height // patch, width // patch


def _real_rows(inputs: dict) -> list[list[int]]:
    """Each row's real (unpadded) token ids, from the attention mask."""
    ids, mask = inputs["input_ids"], inputs.get("attention_mask")
    if mask is None:
        return ids.tolist()
    return [row[m.bool()].tolist() for row, m in zip(ids, mask)]


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _offsets_and_lengths(mask: torch.Tensor) -> tuple[list[int], list[int]]:
    """(B, T) attention mask -> first real position and number of real tokens of each row.

    Real tokens must be contiguous (padding on one side), which is what every processor does."""
    lengths = mask.sum(dim=1).tolist()
    offsets = mask.long().argmax(dim=1).tolist()
    for b, (offset, n) in enumerate(zip(offsets, lengths)):
        if n and int(mask[b, offset:offset + n].sum()) != n:
            raise XlvlmError(f"row {b} of the batch has padding inside its tokens; cannot locate its tokens")
    return offsets, lengths


@contextmanager
def quiet_transformers():
    """Silence transformers' weight-loading progress bars (xlvlm shows its own progress)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def load_with_auto_classes(cls, name: str, config, device, dtype, trust_remote_code: bool = False) -> VLM:
    """Load model + processor through the Auto classes (the default for every family)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    with quiet_transformers():
        try:
            processor = AutoProcessor.from_pretrained(name, trust_remote_code=trust_remote_code)
            model = AutoModelForImageTextToText.from_pretrained(
                name, config=config, dtype=dtype, trust_remote_code=trust_remote_code, use_safetensors=True)
        except ImportError as exc:  # a package the family's processor or code imports
            raise XlvlmError(f"cannot load model {name!r}: {_first_line(exc)}; {FAMILIES_EXTRA_HINT}")
        except (OSError, ValueError, KeyError) as exc:
            if "trust_remote_code" in str(exc):  # e.g. a processor whose code ships with the model
                raise XlvlmError(f"cannot load model {name!r}: it runs code from its repository; {REMOTE_CODE_HINT}")
            raise XlvlmError(f"cannot load model {name!r}: {_first_line(exc)}")
    model.to(device).eval()
    return cls(model, processor, name)

