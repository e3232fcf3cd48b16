"""Shipped word classes: xlvlm's and the research code's, each under its own name."""

import pytest

from xlvlm.data.wordlists import load_word_class, shipped_word_classes
from xlvlm.features.selectors import TokenView, parse_selector


@pytest.mark.parametrize("name, size", [("colors", 24), ("places", 37), ("sentiments", 20),
                                        ("research-colors", 30), ("research-places", 48),
                                        ("research-sentiments", 145)])
def test_class_sizes(name, size):
    words = load_word_class(name)
    assert len(words) == size == len(set(words))  # header comments skipped, no duplicates
    assert name in shipped_word_classes()


def test_research_classes_hold_their_words_and_phrases():
    assert {"coral", "emerald", "charcoal"} <= set(load_word_class("research-colors")) - set(load_word_class("colors"))
    assert "bus stop" in load_word_class("research-places")
    assert "facial expression" in load_word_class("research-sentiments")


class _Spaces:
    def decode(self, ids, skip_special_tokens=True):
        return " ".join(self.words[i] for i in ids)


def test_a_research_class_phrase_is_found_as_a_phrase():
    tok = _Spaces()
    tok.words = ["where", "?", "a", "bus", "stop", "here"]
    view = TokenView(list(range(6)), 2, [], tok, frozenset())
    # "bus stop" ends at token 4; the state producing the phrase is before "bus" (position 2).
    assert parse_selector("class-at:research-places").select(view).positions == [4]
    assert parse_selector("class:research-places").select(view).positions == [2]
    assert parse_selector("class:places").select(view) is None  # xlvlm's places have no "bus stop"
