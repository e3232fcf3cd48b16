import pytest
import torch

import xlvlm
from xlvlm.concepts.grounding.text import ground_text, is_word, random_word_baseline, research_stopwords
from xlvlm.errors import XlvlmError


def _planted(vlm, planted: dict, norm_weight=None):
    tok = vlm.tokenizer
    with torch.no_grad():
        vlm.final_norm.weight.fill_(1.0)
        if norm_weight is not None:
            vlm.final_norm.weight[: len(norm_weight)] = torch.tensor(norm_weight)
        vlm.lm_head.weight.zero_()
        for axis, words in planted.items():
            for rank, word in enumerate(words):
                vlm.lm_head.weight[tok.convert_tokens_to_ids(word), axis] = 10.0 - rank


def test_ground_text_finds_the_words_planted_in_the_lm_head(tiny_dir):
    vlm = xlvlm.load_vlm(tiny_dir("llava"))  # a private copy: its head is rewritten below
    d = vlm.hidden_size
    _planted(vlm, {0: ["red", "circle"], 1: ["teal", "triangle"], 2: ["kitchen", "the"]})  # "the" is a stopword
    with torch.no_grad():
        vlm.lm_head.weight[vlm.tokenizer.convert_tokens_to_ids("?"), 0] = 20.0  # punctuation is never a word
    components = torch.eye(3, d)
    words = ground_text(vlm, components, "final", top_k=2)
    assert words[0] == ["red", "circle"]
    assert words[1] == ["teal", "triangle"]
    assert words[2][0] == "kitchen" and "the" not in words[2]
    baseline = random_word_baseline(vlm, n=4, layer="final", top_k=3)
    assert len(baseline) == 4 and all(all(is_word(w) for w in ws) for ws in baseline)


def test_final_features_skip_the_norm_block_outputs_go_through_it(tiny_dir):
    """The final norm scales axis 0 down: lm_head(v) ranks "red" first, lm_head(norm(v)) "teal"."""
    vlm = xlvlm.load_vlm(tiny_dir("llava"))
    _planted(vlm, {0: ["red"], 1: ["teal"]}, norm_weight=[0.1, 1.0])
    v = torch.zeros(1, vlm.hidden_size)
    v[0, 0], v[0, 1] = 1.0, 0.8
    assert ground_text(vlm, v, "final", top_k=1) == [["red"]]
    norm_name = next(name for name, m in vlm.model.named_modules() if m is vlm.final_norm)
    assert ground_text(vlm, v, norm_name, top_k=1) == [["red"]]  # the same module by name
    assert ground_text(vlm, v, vlm.num_layers - 1, top_k=1) == [["teal"]]
    assert ground_text(vlm, v, "0", top_k=1) == [["teal"]]
    # the research code's reading: the LM head alone, at every layer
    assert ground_text(vlm, v, vlm.num_layers - 1, top_k=1, readout="lm-head") == [["red"]]
    assert ground_text(vlm, v, "final", top_k=1, readout="lm-head") == [["red"]]
    with pytest.raises(XlvlmError, match="unknown readout"):
        ground_text(vlm, v, "final", readout="logit")


def _best_word(logits: torch.Tensor, tokenizer, vocabulary) -> str:
    for token_id in torch.argsort(logits, descending=True).tolist():
        word = tokenizer.decode([token_id], skip_special_tokens=True).strip().lower()
        if word in vocabulary:
            return word
    raise AssertionError("no word")


def test_ground_text_matches_the_models_own_readout_on_the_organism(tmp_path):
    """On the fine-tuned organism: words of `final` rows = the best word of W v (what the
    research code computes), and of last-block rows = the best word of W rmsnorm(v), with the
    head W and the RMSNorm written out here by hand."""
    vlm = xlvlm.organism.load("finetuned")
    from xlvlm.apps.organism.data import caption_samples

    samples = caption_samples("test", with_color=True)[:24]
    last = str(vlm.num_layers - 1)
    store = xlvlm.extract(vlm, samples, layers=[last, "final"], select="class:colors", out=tmp_path / "s",
                          progress=False)
    vocabulary = frozenset(w for w in vlm.tokenizer.get_vocab() if w.isalpha() and len(w) > 1)
    W = vlm.lm_head.weight.detach().float()
    final = store.features("final", present_only=True).float()
    words = ground_text(vlm, final, "final", top_k=1, vocabulary=vocabulary)
    assert [w[0] for w in words] == [_best_word(W @ v, vlm.tokenizer, vocabulary) for v in final]
    block = store.features(last, present_only=True).float()
    eps = vlm.final_norm.variance_epsilon
    normed = block * torch.rsqrt(block.square().mean(-1, keepdim=True) + eps) * vlm.final_norm.weight.detach().float()
    words = ground_text(vlm, block, last, top_k=1, vocabulary=vocabulary)
    assert [w[0] for w in words] == [_best_word(W @ v, vlm.tokenizer, vocabulary) for v in normed]
    # And these rows, produced-from states, ground in the colour each caption names.
    colours = [s["color"] for s, ok in zip(store.samples, store.present.tolist()) if ok]
    assert sum(w[0] == c for w, c in zip(words, colours)) >= 0.95 * len(colours)


def test_word_filters():
    assert len(research_stopwords()) >= 1150 and {"yes", "no", "one"} <= research_stopwords()
    vocabulary = frozenset(["yes", "no", "ox", "red", "circle", "one"])
    # xlvlm: alphabetic, >= 2 letters, its 147 stopwords (not "yes"); numbers are not words.
    assert [w for w in ["yes", "no", "ox", "red", "one", "12", "2.5"] if is_word(w, vocabulary)] == ["yes", "ox", "red", "one"]
    # research: > 2 letters, 1160 stopwords (yes, no, one), numbers kept whatever the list.
    assert [w for w in ["yes", "no", "ox", "red", "one", "12", "2.5"]
            if is_word(w, vocabulary, word_filter="research")] == ["red", "12", "2.5"]
    with pytest.raises(XlvlmError, match="word filter"):
        is_word("red", vocabulary, word_filter="nltk")
