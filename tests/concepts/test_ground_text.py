import torch

import xlvlm
from xlvlm.concepts.text import ground_text, is_word, random_word_baseline


def test_ground_text_finds_the_words_planted_in_the_lm_head(tiny_dir):
    vlm = xlvlm.load_vlm(tiny_dir("llava"))  # a private copy: its head is rewritten below
    tok = vlm.tokenizer
    d = vlm.hidden_size
    planted = {0: ["red", "circle"], 1: ["teal", "triangle"], 2: ["kitchen", "the"]}  # "the" is a stopword
    with torch.no_grad():
        vlm.final_norm.weight.fill_(1.0)
        vlm.lm_head.weight.zero_()
        for axis, words in planted.items():
            for rank, word in enumerate(words):
                vlm.lm_head.weight[tok.convert_tokens_to_ids(word), axis] = 10.0 - rank
        vlm.lm_head.weight[tok.convert_tokens_to_ids("?"), 0] = 20.0  # punctuation is never a word
    components = torch.eye(3, d)
    words = ground_text(vlm, components, top_k=2)
    assert words[0] == ["red", "circle"]
    assert words[1] == ["teal", "triangle"]
    assert words[2][0] == "kitchen" and "the" not in words[2]
    baseline = random_word_baseline(vlm, n=4, top_k=3)
    assert len(baseline) == 4 and all(all(is_word(w) for w in ws) for ws in baseline)
