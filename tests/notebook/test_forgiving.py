"""The first mistakes people make in a notebook get one-line errors that say what to pass;
layer keys are written as ints or strings alike."""

import pytest
import torch
from PIL import Image

import xlvlm
from xlvlm.errors import XlvlmError
from xlvlm.hooks import record


def _one_line(info) -> str:
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_string_where_samples_go(vlm_of):
    vlm = vlm_of("llava")
    with pytest.raises(XlvlmError) as info:
        vlm.generate("what shape?")
    assert "pass a list of sample dicts" in _one_line(info) and "'prompt'" in str(info.value)
    with pytest.raises(XlvlmError, match="pass a list of sample dicts"):
        xlvlm.extract(vlm, "what shape?", layers=[0], progress=False)


def test_one_sample_dict_where_a_list_goes(vlm_of, samples):
    with pytest.raises(XlvlmError) as info:
        vlm_of("llava").generate(samples[0], max_new_tokens=1)
    assert "[sample]" in _one_line(info)


def test_a_sample_without_id_is_named(vlm_of, samples):
    bad = [samples[0], {"image": samples[1]["image"], "prompt": "what shape?"}]
    with pytest.raises(XlvlmError) as info:
        xlvlm.extract(vlm_of("llava"), bad, layers=[0], progress=False)
    assert _one_line(info).startswith("samples[1] has no 'id'")


def test_running_a_model_needs_no_ids(vlm_of, samples):
    vlm = vlm_of("llava")
    bare = [{"image": s["image"], "prompt": s["prompt"]} for s in samples[:2]]
    assert vlm.generate(bare, max_new_tokens=2) == vlm.generate(samples[:2], max_new_tokens=2)


def test_duplicate_ids_and_missing_prompts_are_named(vlm_of, samples):
    vlm = vlm_of("llava")
    with pytest.raises(XlvlmError, match=r"samples\[1\]: id 's0' is also the id of samples\[0\]"):
        xlvlm.extract(vlm, [samples[0], samples[0]], layers=[0], progress=False)
    with pytest.raises(XlvlmError, match=r"samples\[0\] \(id 's0'\): 'prompt' is None"):
        vlm.generate([dict(samples[0], prompt=None)])
    with pytest.raises(XlvlmError, match=r"'image' is 3; give a file path or a PIL image"):
        vlm.generate([dict(samples[0], image=3)])


def test_a_bare_transformers_model_where_a_vlm_goes(vlm_of, samples):
    hf_model = vlm_of("llava").model
    with pytest.raises(XlvlmError) as info:
        xlvlm.extract(hf_model, samples[:1], layers=[0], progress=False)
    assert "xlvlm.load_vlm" in _one_line(info) and type(hf_model).__name__ in str(info.value)
    sv = xlvlm.SteeringVector({0: torch.zeros(hf_model.config.text_config.hidden_size)})
    with pytest.raises(XlvlmError, match="xlvlm.load_vlm"):
        with sv.apply(hf_model, alpha=1.0):
            pass
    with pytest.raises(XlvlmError, match="xlvlm.load_vlm"):
        with record(hf_model, [0]):
            pass


def test_a_bare_transformers_model_for_grounding_concepts_and_shift(vlm_of, samples, tmp_path):
    """ground_text, run_concepts and analyse_shift take the model to ground words: a bare HF
    model gets the same one-line error as extract, before anything is written."""
    from xlvlm.concepts.workflow import run_concepts

    vlm = vlm_of("llava")
    store = xlvlm.extract(vlm, samples[:6], layers=[0], progress=False)
    hf_model = vlm.model
    with pytest.raises(XlvlmError, match="ground_text needs a VLM") as info:
        xlvlm.ground_text(hf_model, torch.zeros(2, vlm.hidden_size), layer=0)
    assert "\n" not in str(info.value)
    with pytest.raises(XlvlmError, match="run_concepts needs a VLM"):
        run_concepts(store, 0, tmp_path / "c", method="kmeans", n_concepts=2, vlm=hf_model, progress=False)
    assert not (tmp_path / "c").exists()
    with pytest.raises(XlvlmError, match="analyse_shift needs a VLM"):
        xlvlm.analyse_shift(store, store, 0, n_concepts=2, method="kmeans", vlm=hf_model)


def test_generate_takes_pil_images(vlm_of, samples):
    vlm = vlm_of("llava")
    pictures = [dict(s, image=Image.open(s["image"])) for s in samples[:2]]
    assert vlm.generate(pictures, max_new_tokens=3) == vlm.generate(samples[:2], max_new_tokens=3)


def test_oversized_pil_image_is_one_line(vlm_of, samples, monkeypatch):
    monkeypatch.setattr("xlvlm.data.images.MAX_IMAGE_PIXELS", 100)
    with pytest.raises(XlvlmError) as info:
        vlm_of("llava").generate([dict(samples[0], image=Image.new("RGB", (20, 20)))])
    assert _one_line(info).startswith("<PIL.Image 20x20 RGB sha256:")


def test_recorded_layers_read_back_as_ints_or_strings(vlm_of, samples):
    vlm = vlm_of("llava")
    batch = vlm.encode(samples[:2])
    with record(vlm, [3 % vlm.num_layers, "final"]) as rec:
        vlm.forward(batch)
    key = 3 % vlm.num_layers
    assert torch.equal(rec.stacked(key), rec.stacked(str(key)))
    assert torch.equal(rec.stacked(key - vlm.num_layers), rec.stacked(key))
    assert rec.stacked("final").shape[-1] == vlm.hidden_size
    with pytest.raises(XlvlmError, match="was not recorded"):
        rec.stacked((key + 1) % vlm.num_layers)


def test_vectors_and_conditions_key_layers_one_way():
    sv = xlvlm.SteeringVector({3: torch.ones(4)})
    assert sv.layers == ["3"]
    condition = xlvlm.Condition(3, torch.ones(2) / 2 ** 0.5, 0.0)
    assert condition.layer == "3"
    with pytest.raises(XlvlmError, match="is not a layer"):
        xlvlm.SteeringVector({3.5: torch.ones(4)})
