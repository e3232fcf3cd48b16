"""Token selectors: which positions of a sample's sequence become feature rows.

A selector sees one sample at a time as a :class:`TokenView` (its real tokens, unpadded: the
prompt, then the response, which is either the generated tokens or the teacher-forced answer)
and returns a :class:`Selection` (positions, and whether they are averaged into one row or
kept as one row each), or ``None`` when the sample has no match (it is then stored with
``present: false``, never dropped).

Spec strings (``--select``):
  all               every position, one row each
  index:K           position K of the sequence (python indexing: -1 is the last token)
  range:A:B         positions A..B-1 (python slice), one row each
  last-prompt       the last prompt token (the one that predicts the first answer token)
  image             mean over image tokens
  generated-mean    mean over response tokens (special tokens excluded)
  token:WORD        the state that PRODUCES the first response occurrence of WORD (never the
                    prompt): the position just before the word's first token, whose
                    next-token prediction is the word (the CoX-LMM research code's token of
                    interest); case and leading-space variants match
  class:NAME        the same for the first response occurrence of any word of a class
                    (colors, places, sentiments, or a file with one word per line)
  before:STOP       mean over the states that produce the response tokens before the first
                    STOP token (all response tokens when STOP never appears), i.e. the
                    positions from the last prompt token up to two before STOP
  token-at:WORD     the state AT the word instead (a word split into several tokens is
                    represented by its last token); its next-token prediction is what follows
  class-at:NAME     the state at the first class word (last token), as token-at
  before-at:STOP    mean over the states at the response tokens before STOP

The two conventions differ by one position. "Produces" is the research convention: in
generate mode the kept state is the one the model was in when it chose the word, so the logit
lens of the row reads back the word. "At" keeps the state after the word was fed back in, which
reads out the word that comes next. In teacher-forcing mode the positions are the same, on the
reference answer: the "produces" state is the one whose prediction is scored against the word
(it reads back the word only when the model agrees with the reference).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from xlvlm.data.wordlists import load_word_class
from xlvlm.errors import XlvlmError

@dataclass
class TokenView:
    """One sample's real tokens. ``tokens[:prompt_length]`` is the prompt (templated, image
    tokens included); ``tokens[prompt_length:]`` the response."""

    tokens: list[int]
    prompt_length: int
    image_positions: list[int]
    tokenizer: object
    special_ids: frozenset

    @cached_property
    def pieces(self) -> list[str]:
        return self.tokenizer.convert_ids_to_tokens(self.tokens)

    @property
    def response_positions(self) -> range:
        return range(self.prompt_length, len(self.tokens))


@dataclass
class Selection:
    positions: list[int]
    mean: bool  # True: average positions into one row; False: one row per position


def response_text_spans(view: TokenView) -> tuple[str, list[int]]:
    """Decode the response and the character offset where each response token ends.

    Decoding prefixes works for every tokenizer (word-level, SentencePiece, byte BPE) without
    knowing its word-start markers. Special tokens decode to nothing, so they never match.
    """
    tokens = view.tokens[view.prompt_length:]
    decode = view.tokenizer.decode
    ends = [len(decode(tokens[:k + 1], skip_special_tokens=True)) for k in range(len(tokens))]
    return decode(tokens, skip_special_tokens=True), ends


def find_words(view: TokenView, words: list[str]) -> tuple[int, int] | None:
    """The first response occurrence of any of ``words`` as a whole word, case-insensitive.

    Returns (first token, last token) positions in the sequence, or None.
    """
    text, ends = response_text_spans(view)
    alternatives = "|".join(re.escape(w.strip()) for w in sorted(words, key=len, reverse=True) if w.strip())
    match = re.search(rf"(?<![\w])(?:{alternatives})(?![\w])", text, flags=re.IGNORECASE)
    if match is None:
        return None
    first = next(k for k, end in enumerate(ends) if end > match.start())
    last = next(k for k, end in enumerate(ends) if end >= match.end())
    return view.prompt_length + first, view.prompt_length + last


class Selector:
    """Base class: ``spec`` is the string it was parsed from; ``needs_response`` tells the
    extractor that a response (generated or teacher-forced answer) must be present."""

    needs_response = False

    def __init__(self, spec: str):
        self.spec = spec

    def select(self, view: TokenView) -> Selection | None:
        raise NotImplementedError

    @property
    def rows_per_sample(self) -> int | None:
        """1 when every sample gives exactly one row; None when it varies."""
        return 1

    def __repr__(self) -> str:
        return f"Selector({self.spec!r})"


class AllTokens(Selector):
    rows_per_sample = None

    def select(self, view):
        return Selection(list(range(len(view.tokens))), mean=False)


class Index(Selector):
    def __init__(self, spec, index: int):
        super().__init__(spec)
        self.index = index

    def select(self, view):
        n = len(view.tokens)
        if not -n <= self.index < n:
            return None
        return Selection([self.index % n], mean=False)


class Range(Selector):
    rows_per_sample = None

    def __init__(self, spec, start: int | None, stop: int | None):
        super().__init__(spec)
        self.slice = slice(start, stop)

    def select(self, view):
        positions = list(range(len(view.tokens)))[self.slice]
        return Selection(positions, mean=False) if positions else None


class LastPrompt(Selector):
    def select(self, view):
        return Selection([view.prompt_length - 1], mean=False)


class ImageMean(Selector):
    def select(self, view):
        return Selection(list(view.image_positions), mean=True) if view.image_positions else None


class GeneratedMean(Selector):
    needs_response = True

    def select(self, view):
        positions = [p for p in view.response_positions if view.tokens[p] not in view.special_ids]
        return Selection(positions, mean=True) if positions else None


class WordOfInterest(Selector):
    """First response occurrence of any of ``words``: the state producing it (default) or the
    state at it (``at_token``)."""

    needs_response = True

    def __init__(self, spec, words: list[str], at_token: bool = False):
        super().__init__(spec)
        self.words = words
        self.at_token = at_token

    def select(self, view):
        found = find_words(view, self.words)
        if found is None:
            return None
        first, last = found
        # The word's first token is produced by the state just before it (>= the last prompt
        # token, since matches are searched in the response only).
        return Selection([last if self.at_token else first - 1], mean=False)


class BeforeStop(Selector):
    """Mean over the response tokens before the first STOP: the states producing them
    (default) or the states at them (``at_token``)."""

    needs_response = True

    def __init__(self, spec, stop: str, at_token: bool = False):
        super().__init__(spec)
        self.stop = stop
        self.at_token = at_token

    def select(self, view):
        found = find_words(view, [self.stop]) if self.stop[0].isalnum() else self._find_symbol(view)
        end = len(view.tokens) if found is None else found[0]
        tokens = [p for p in range(view.prompt_length, end) if view.tokens[p] not in view.special_ids]
        positions = tokens if self.at_token else [p - 1 for p in tokens]
        return Selection(positions, mean=True) if positions else None

    def _find_symbol(self, view):
        """A punctuation stop ("." or "\\n") matches anywhere, not only as a whole word."""
        text, ends = response_text_spans(view)
        at = text.find(self.stop)
        if at < 0:
            return None
        first = next(k for k, end in enumerate(ends) if end > at)
        return view.prompt_length + first, None


SELECTOR_HELP = ("all, index:K, range:A:B, last-prompt, image, generated-mean, token:WORD, "
                 "class:NAME (colors, places, sentiments, research-colors, research-places, research-sentiments or a "
                 "word file), before:STOP; token:, class: "
                 "and before: keep the state that produces the word (research convention), "
                 "token-at:, class-at: and before-at: the state at it")


def _int(text: str, spec: str) -> int | None:
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise XlvlmError(f"bad selector {spec!r}: {text!r} is not an integer")


def parse_selector(spec: str) -> Selector:
    """Parse a ``--select`` string into a Selector."""
    spec = str(spec).strip()
    name, _, arg = spec.partition(":")
    simple = {"all": AllTokens, "last-prompt": LastPrompt, "image": ImageMean, "generated-mean": GeneratedMean}
    if name in simple and not arg:
        return simple[name](spec)
    if name == "index" and arg:
        index = _int(arg, spec)
        return Index(spec, index)
    if name == "range" and ":" in arg:
        start, stop = arg.split(":", 1)
        return Range(spec, _int(start, spec), _int(stop, spec))
    at_token = name.endswith("-at")  # token-at:, class-at:, before-at: the state at the word
    if name in ("token", "token-at") and arg.strip():
        return WordOfInterest(spec, [arg.strip()], at_token=at_token)
    if name in ("class", "class-at") and arg.strip():
        return WordOfInterest(spec, load_word_class(arg.strip()), at_token=at_token)
    if name in ("before", "before-at") and arg.strip():
        return BeforeStop(spec, arg.strip(), at_token=at_token)
    raise XlvlmError(f"unknown selector {spec!r}: use one of {SELECTOR_HELP}")
