import pytest
import torch

from xlvlm.errors import XlvlmError
from xlvlm.features.run import extract_batch_teacher_forced
from xlvlm.features.selectors import TokenView, find_words, parse_selector
from xlvlm.hooks import record, resolve_layers


def _hook_counts(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_record_removes_exactly_its_own_hooks(vlm_of, samples):
    vlm = vlm_of("llava")
    user_hook = vlm.decoder_layers[0].register_forward_hook(lambda *a: None)
    before = _hook_counts(vlm.model)
    batch = vlm.encode(samples[:1])
    with pytest.raises(RuntimeError):
        with record(vlm, [0, "final"]):
            assert _hook_counts(vlm.model) == before + 2
            raise RuntimeError("boom")
    assert _hook_counts(vlm.model) == before
    assert user_hook.id in vlm.decoder_layers[0]._forward_hooks
    user_hook.remove()


def test_stop_early_skips_later_blocks_and_lm_head(vlm_of, samples):
    vlm = vlm_of("llava")
    calls = []
    handles = [layer.register_forward_hook(lambda m, a, o, i=i: calls.append(i)) for i, layer in enumerate(vlm.decoder_layers)]
    handles.append(vlm.lm_head.register_forward_hook(lambda *a: calls.append("head")))
    try:
        with record(vlm, [1], stop_early=True) as rec:
            vlm.forward(vlm.encode(samples[:2]))
    finally:
        for h in handles:
            h.remove()
    assert calls == [0, 1]
    assert rec.stacked("1").shape[0] == 2


def test_layer_convention_and_errors(vlm_of):
    vlm = vlm_of("llava")
    n = vlm.num_layers
    assert [r.key for r in resolve_layers(vlm, [-1, 0, "final", "1"])] == [str(n - 1), "0", "final", "1"]
    assert [r.key for r in resolve_layers(vlm, "2,final")] == ["2", "final"]
    with pytest.raises(XlvlmError, match="out of range"):
        resolve_layers(vlm, [n])
    with pytest.raises(XlvlmError, match="unknown layer"):
        resolve_layers(vlm, ["no.such.module"])
    ref = resolve_layers(vlm, ["model.language_model.layers.0"])[0]
    assert ref.module is vlm.decoder_layers[0]


class _WordTokenizer:
    """Maps ids to fixed strings, SentencePiece-style, to test matching without a model."""

    def __init__(self, pieces):
        self.pieces = pieces

    def decode(self, ids, skip_special_tokens=True):
        return "".join(self.pieces[i] for i in ids if not (skip_special_tokens and self.pieces[i] == "</s>")).replace("\u2581", " ").lstrip()


def _view(pieces, prompt_length):
    tok = _WordTokenizer(pieces)
    ids = list(range(len(pieces)))
    special = frozenset(i for i, p in enumerate(pieces) if p == "</s>")
    return TokenView(ids, prompt_length, [], tok, special)


def test_token_word_never_matches_prompt_and_handles_variants():
    #          0        1      2       3        4       5       6       7      8
    pieces = ["\u2581is", "\u2581red", "?", "\u2581Red", "dish", "\u2581R", "ed", ".", "</s>"]
    view = _view(pieces, prompt_length=3)
    # "Reddish" is not the word; "R"+"ed" is. The default keeps the state that produces its
    # first token (position 4); the "-at" selectors keep the state at its last token.
    assert find_words(view, ["red"]) == (5, 6)
    assert find_words(_view(pieces[:5], 3), ["red"]) is None  # only the prompt has "red"
    assert parse_selector("token:RED").select(view).positions == [4]
    assert parse_selector("token-at:RED").select(view).positions == [6]
    assert parse_selector("class:colors").select(view).positions == [4]
    assert parse_selector("class-at:colors").select(view).positions == [6]
    # Before ".": the response tokens 3..6, produced by the states 2..5 (2 = the last prompt token).
    assert parse_selector("before:.").select(view).positions == [2, 3, 4, 5]
    assert parse_selector("before-at:.").select(view).positions == [3, 4, 5, 6]
    assert parse_selector("generated-mean").select(view).positions == [3, 4, 5, 6, 7]


def test_a_word_opening_the_response_is_produced_by_the_last_prompt_token():
    pieces = ["\u2581is", "?", "\u2581red", "\u2581circle", "</s>"]
    view = _view(pieces, prompt_length=2)
    assert parse_selector("token:red").select(view).positions == [1]
    assert parse_selector("token-at:red").select(view).positions == [2]
    assert parse_selector("before:circle").select(view).positions == [1]
    assert parse_selector("before-at:circle").select(view).positions == [2]


def test_token_selector_on_model_uses_answer_not_prompt(vlm_of, samples):
    vlm = vlm_of("llava")
    sample = dict(samples[1], prompt="is there a red shape? red red", answer="blue circle")
    result = extract_batch_teacher_forced(vlm, [sample], ["final"], parse_selector("token:red"))
    assert result.present == [False]
    assert torch.isnan(result.rows["final"]).all()
    sample["answer"] = "yes a red circle"
    result = extract_batch_teacher_forced(vlm, [sample], ["final"], parse_selector("token:red"))
    assert result.present == [True]
    batch = vlm.encode([sample], answers=[sample["answer"]])
    tokens = batch.input_ids[0].tolist()
    red = vlm.tokenizer.convert_tokens_to_ids("red")
    answer_red = [i for i, t in enumerate(tokens) if t == red and i >= batch.prompt_lengths[0]]
    with record(vlm, ["final"]) as rec:
        vlm.forward(batch)
    # token: keeps the state whose next-token prediction is "red"; token-at: the state at "red".
    torch.testing.assert_close(result.rows["final"][0], rec.stacked("final")[0, answer_red[0] - 1])
    at = extract_batch_teacher_forced(vlm, [sample], ["final"], parse_selector("token-at:red"))
    torch.testing.assert_close(at.rows["final"][0], rec.stacked("final")[0, answer_red[0]])


@pytest.mark.parametrize("spec", ["nope", "index:x", "range:1", "token:", "class:no-such-class", "token-at:", "last-prompt-at"])
def test_bad_selectors_are_one_line_errors(spec):
    with pytest.raises(XlvlmError) as info:
        parse_selector(spec)
    assert "\n" not in str(info.value)
