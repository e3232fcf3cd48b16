"""CLIPScore definitions, computed by hand with planted embeddings."""

import math

import pytest
import torch

from xlvlm.concepts.grounding.scores import ClipScorer, concept_sentence, top_concept_words, top_concepts_words


class PlantedClip(ClipScorer):
    """ClipScorer whose encoders are lookup tables of unit vectors (no CLIP model)."""

    def __init__(self, texts: dict, images: dict):
        self.texts, self.images, self.seen = texts, images, []

    def text_embeddings(self, texts):
        self.seen.extend(texts)
        return torch.nn.functional.normalize(torch.stack([self.texts[t] for t in texts]), dim=-1)

    def image_embeddings(self, paths):
        return torch.nn.functional.normalize(torch.stack([self.images[p] for p in paths]), dim=-1)


def _unit(angle_degrees: float) -> torch.Tensor:
    a = math.radians(angle_degrees)
    return torch.tensor([math.cos(a), math.sin(a)])


def test_concept_sentence_is_the_research_codes():
    assert concept_sentence(["red", "apple", "fruit"]) == "A photo is described by the words red, apple, fruit."


def test_research_clipscore_is_the_mean_of_one_sentence_per_concept():
    words = [["red", "apple"], ["dog"], ["sky"]]
    s0, s1, s2 = (concept_sentence(w) for w in words)
    # Image at 0 degrees; sentences at 60, 0 and 120 degrees: cosines 0.5, 1, -0.5 (clipped to 0).
    texts = {s0: _unit(60), s1: _unit(0), s2: _unit(120),
             "red": _unit(0), "apple": _unit(90), "dog": _unit(60), "sky": _unit(180)}
    scorer = PlantedClip(texts, {"x.png": _unit(0)})
    activations = torch.tensor([[3.0, 2.0, 1.0]])  # concept 0 most active, then 1, then 2
    top3 = top_concepts_words(activations, words, 3)
    assert top3 == [words]
    assert scorer.score(["x.png"], top3) == pytest.approx(2.5 * (0.5 + 1.0 + 0.0) / 3)
    assert scorer.score(["x.png"], top_concepts_words(activations, words, 1)) == pytest.approx(2.5 * 0.5)
    assert set(scorer.seen) <= {s0, s1, s2}  # sentences only, never a bare word
    # Word by word: the union of the top-3 concepts' words, each scored alone.
    merged = top_concept_words(activations, words, 3)
    assert merged == [["red", "apple", "dog", "sky"]]
    assert scorer.score_words(["x.png"], merged) == pytest.approx(2.5 * (1.0 + 0.0 + 0.5 + 0.0) / 4)


def test_concepts_without_words_are_left_out_not_scored_as_a_bare_prefix():
    words = [[], ["dog"]]
    texts = {concept_sentence(["dog"]): _unit(60)}
    scorer = PlantedClip(texts, {"x.png": _unit(0), "y.png": _unit(0)})
    per_sample = [[[], ["dog"]], [[]]]  # y's only concept has no words: y is left out
    assert scorer.score(["x.png", "y.png"], per_sample) == pytest.approx(2.5 * 0.5)
    assert scorer.score(["y.png"], [[[]]]) is None
