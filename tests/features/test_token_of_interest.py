"""The token of interest on the fine-tuned organism's captions ("a red circle").

``token:``/``class:`` keep the state that PRODUCES the word (the research convention): its
logit lens reads back the word. ``token-at:``/``class-at:`` keep the state AT the word: its
logit lens reads the word that follows. The logit lens here is computed from the model's own
modules (final norm, then LM head; the LM head alone for ``final``, already normed), not
through xlvlm's unembedding.
"""

import pytest
import torch

import xlvlm
from xlvlm.features.run import extract_batch_generated, extract_batch_teacher_forced
from xlvlm.features.selectors import parse_selector
from xlvlm.apps.organism.data import COLOR_NAMES, caption_samples

MAX_NEW_TOKENS = 4


@pytest.fixture(scope="module")
def organism():
    return xlvlm.organism.load("finetuned")


@pytest.fixture(scope="module")
def captions():
    return caption_samples("test", with_color=True)[:40]


def _read_out(vlm, rows: torch.Tensor, layer: str) -> list[str]:
    with torch.no_grad():
        normed = rows if layer == "final" else vlm.final_norm(rows)
        ids = vlm.lm_head(normed).argmax(-1).tolist()
    return vlm.tokenizer.convert_ids_to_tokens(ids)


def _expected(words: list[str], of_interest, at_token: bool) -> str | None:
    """The word the kept state should read out: the word of interest, or (at it) the next word."""
    for i, word in enumerate(words):
        if of_interest(word):
            if not at_token:
                return word
            return words[i + 1] if i + 1 < len(words) else "</s>"
    return None


SELECTORS = {  # spec: (which word is of interest, at_token)
    "token:circle": (lambda w: w == "circle", False),
    "class:colors": (lambda w: w in COLOR_NAMES, False),
    "token-at:circle": (lambda w: w == "circle", True),
    "class-at:colors": (lambda w: w in COLOR_NAMES, True),
}


@pytest.mark.parametrize("generate", [True, False], ids=["generate", "teacher-forced"])
@pytest.mark.parametrize("spec", list(SELECTORS))
def test_logit_lens_of_kept_rows_reads_the_token_of_interest(organism, captions, spec, generate):
    of_interest, at_token = SELECTORS[spec]
    layers = [str(organism.num_layers - 1), "final"]
    if generate:
        result = extract_batch_generated(organism, captions, layers, parse_selector(spec), MAX_NEW_TOKENS)
        responses = result.predictions
    else:
        result = extract_batch_teacher_forced(organism, captions, layers, parse_selector(spec))
        responses = [s["answer"] for s in captions]
    expected = [_expected(r.split(), of_interest, at_token) for r in responses]
    assert result.present == [e is not None for e in expected]
    wanted = [e for e in expected if e is not None]
    assert len(wanted) >= 15, wanted  # enough present samples for a 95% threshold to mean something
    present = torch.tensor(result.present)
    for layer in layers:
        read = _read_out(organism, result.rows[layer][present], layer)
        agree = sum(r == w for r, w in zip(read, wanted))
        assert agree >= 0.95 * len(wanted), (spec, layer, list(zip(read, wanted)))
