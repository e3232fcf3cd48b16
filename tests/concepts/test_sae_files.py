"""load_sae / save_sae on files built from the published layouts with planted weights, and a
pretrained SAE used where a dictionary is (no SAELens needed: test_saelens_interop.py checks
against SAELens itself)."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import xlvlm
from xlvlm.cli import main
from xlvlm.concepts import ConceptDictionary, TopKSAE, load_sae, save_sae
from xlvlm.errors import XlvlmError

D, K = 12, 300


def _weights(seed=0, k=K, gated=False):
    g = torch.Generator().manual_seed(seed)
    w = {"W_enc": torch.randn(D, k, generator=g) / D ** 0.5, "W_dec": torch.randn(k, D, generator=g),
         "b_dec": torch.randn(D, generator=g) * 0.1, "b_enc": torch.randn(k, generator=g) * 0.1,
         "threshold": torch.rand(k, generator=g) * 0.5}
    if gated:
        w.update(b_gate=w.pop("b_enc"), b_mag=torch.randn(k, generator=g) * 0.1, r_mag=torch.randn(k, generator=g) * 0.1)
        del w["threshold"]
    return w


def _saelens_folder(folder, architecture, weights, **cfg):
    """A folder as SAELens's SAE.save_model writes it."""
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in weights.items()}, str(folder / "sae_weights.safetensors"))
    k = weights["W_dec"].shape[0]
    (folder / "cfg.json").write_text(json.dumps({
        "architecture": architecture, "d_in": D, "d_sae": k, "dtype": "float32", "device": "cpu",
        "apply_b_dec_to_input": True, "normalize_activations": "none",
        "metadata": {"sae_lens_version": "6.54.12", "hook_name": "blocks.1.hook_resid_post"}, **cfg}))
    return folder


X = torch.randn(40, D, generator=torch.Generator().manual_seed(9)) * 2


def test_jumprelu_codes_follow_the_threshold_and_pre_encoder_bias(tmp_path):
    w = _weights()
    sae = load_sae(_saelens_folder(tmp_path / "s", "jumprelu", w))
    pre = (X - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    expected = torch.where(pre > w["threshold"], pre, torch.zeros(()))
    torch.testing.assert_close(sae.transform(X), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sae.inverse_transform(expected), expected @ w["W_dec"] + w["b_dec"])
    assert sae.components_.shape == (K, D) and sae.layer == "1"


def test_topk_keeps_k_features_per_row_and_gated_uses_its_gate(tmp_path):
    topk = load_sae(_saelens_folder(tmp_path / "t", "topk", {k: v for k, v in _weights().items() if k != "threshold"},
                                    k=5))
    assert ((topk.transform(X) > 0).sum(1) <= 5).all() and ((topk.transform(X) > 0).sum(1) >= 1).all()
    w = _weights(gated=True)
    gated = load_sae(_saelens_folder(tmp_path / "g", "gated", w))
    x = X - w["b_dec"]
    expected = ((x @ w["W_enc"] + w["b_gate"]) > 0) * torch.relu(x @ (w["W_enc"] * w["r_mag"].exp()) + w["b_mag"])
    torch.testing.assert_close(gated.transform(X), expected, rtol=1e-5, atol=1e-5)


def test_saelens_configs_before_6_0_read_too(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    w = {k: v for k, v in _weights().items() if k != "threshold"}
    save_file(w, str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({"d_in": D, "d_sae": K, "hook_point": "blocks.3.hook_resid_pre",
                                                 "activation_fn": "topk", "activation_fn_kwargs": {"k": 7}}))
    sae = load_sae(folder)
    assert sae.architecture == "topk" and sae.k == 7 and sae.layer == "2" and sae.apply_b_dec_to_input
    assert int((sae.transform(X) > 0).sum(1).max()) == 7


def test_gemma_scope_npz_and_gemma_scope_2_safetensors_as_published(tmp_path):
    w = _weights(1)
    one = tmp_path / "gemma-scope-2b-pt-res" / "layer_3" / "width_16k" / "average_l0_71"
    one.mkdir(parents=True)
    np.savez(one / "params.npz", **{k: v.numpy() for k, v in w.items()})
    two = tmp_path / "gemma-scope-2-4b-it" / "resid_post" / "layer_2_width_16k_l0_medium"
    two.mkdir(parents=True)
    save_file({k.lower(): v for k, v in w.items()}, str(two / "params.safetensors"))
    pre = X @ w["W_enc"] + w["b_enc"]  # Gemma Scope: no pre-encoder bias
    expected = torch.where(pre > w["threshold"], pre, torch.zeros(()))
    for path, layer in ((one / "params.npz", "3"), (two, "2")):
        sae = load_sae(path)
        torch.testing.assert_close(sae.transform(X), expected, rtol=1e-5, atol=1e-5)
        assert sae.layer == layer
    mlp = tmp_path / "gemma-scope-2b-pt-mlp" / "layer_3" / "width_16k" / "x"
    mlp.mkdir(parents=True)
    np.savez(mlp / "params.npz", **{k: v.numpy() for k, v in w.items()})
    with pytest.raises(XlvlmError, match="not the residual stream"):
        load_sae(mlp).check_fits(D, 4, "the model")


def test_untrusted_files_fail_in_one_line(tmp_path):
    bad = tmp_path / "pickled" / "layer_1"
    bad.mkdir(parents=True)
    np.savez(bad / "params.npz", W_enc=np.array([object()], dtype=object))
    with pytest.raises(XlvlmError, match="params.npz"):
        load_sae(bad / "params.npz")
    w = _weights()
    del w["threshold"]
    with pytest.raises(XlvlmError, match="'threshold' is missing"):
        load_sae(_saelens_folder(tmp_path / "j", "jumprelu", w))
    with pytest.raises(XlvlmError, match="architecture 'matryoshka'"):
        load_sae(_saelens_folder(tmp_path / "m", "matryoshka", _weights()))
    with pytest.raises(XlvlmError, match="normalize_activations"):
        load_sae(_saelens_folder(tmp_path / "n", "jumprelu", _weights(), normalize_activations="layer_norm"))
    with pytest.raises(XlvlmError, match="no SAE found"):
        load_sae(tmp_path)


def test_width_or_layer_that_does_not_fit_is_one_line(tmp_path):
    sae = load_sae(_saelens_folder(tmp_path / "s", "jumprelu", _weights()))
    with pytest.raises(XlvlmError, match="12-wide .* hidden size 16"):
        sae.check_fits(16, 4, "the model")
    with pytest.raises(XlvlmError, match="layer 1 .* 1 layers"):
        sae.check_fits(D, 1, "the model")
    assert sae.check_fits(D, 4, "the model") == "1"


def test_export_round_trips_and_this_packages_topk_sae_keeps_its_codes(tmp_path):
    sae = load_sae(_saelens_folder(tmp_path / "s", "jumprelu", _weights()))
    again = load_sae(save_sae(sae, tmp_path / "e"))
    assert torch.equal(again.transform(X), sae.transform(X)) and again.hook_name == sae.hook_name
    with pytest.raises(XlvlmError, match="already exists"):
        save_sae(sae, tmp_path / "e")
    fitted = TopKSAE(n_concepts=8, k_active=3, steps=40).fit(X)
    exported = load_sae(save_sae(fitted, tmp_path / "topk", hook_name="blocks.0.hook_resid_post"))
    torch.testing.assert_close(exported.transform(X), fitted.transform(X), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(exported.inverse_transform(exported.transform(X)),
                               fitted.inverse_transform(fitted.transform(X)), rtol=1e-5, atol=1e-5)
    with pytest.raises(XlvlmError, match="no SAE encoder"):
        save_sae(xlvlm.concepts.learn_concepts(X, method="pca", n_concepts=3), tmp_path / "pca")


def test_selected_features_code_as_in_the_whole_sae_and_survive_save(tmp_path):
    for architecture, w, extra in (("jumprelu", _weights(), {}),
                                   ("topk", {k: v for k, v in _weights().items() if k != "threshold"}, {"k": 20})):
        sae = load_sae(_saelens_folder(tmp_path / architecture, architecture, w, **extra))
        top = sae.top_features(X, 6)
        assert len(top) == 6 and len(set(top)) == 6
        codes = sae.transform(X)
        strongest = torch.bincount(codes.argmax(1), minlength=K)
        assert int(strongest[top[0]]) == int(strongest.max())
        picked = sae.select(top)
        torch.testing.assert_close(picked.transform(X), codes[:, top])
        cd = picked.to_dictionary(picked.transform(X))
        cd.save(tmp_path / f"cd-{architecture}")
        loaded = ConceptDictionary.load(tmp_path / f"cd-{architecture}")
        assert loaded.method == "sae" and loaded.params["features"] == top
        torch.testing.assert_close(loaded.transform(X), codes[:, top])
        every = list(range(K))[::-1]  # all features, reordered: codes and components follow the order
        torch.testing.assert_close(sae.select(every).transform(X), codes[:, every])
        torch.testing.assert_close(sae.select(every).components_, sae.components_[every])


def test_steering_along_one_sae_feature(tmp_path, capsys):
    folder = _saelens_folder(tmp_path / "s", "jumprelu", _weights())
    sae = load_sae(folder)
    vector = xlvlm.SteeringVector.from_concepts(sae.select([7, 40]).to_dictionary(torch.zeros(1, 2)), None, 1, "1")
    torch.testing.assert_close(vector.layer_activations["1"], sae.components_[40])
    out = tmp_path / "v.safetensors"
    assert main(["steer", "compute", "--method", "concept", "--concepts", str(folder), "--to", "40", "--layer", "1",
                 "--out", str(out)]) == 0
    torch.testing.assert_close(xlvlm.SteeringVector.load(out).layer_activations["1"], sae.components_[40])
    assert main(["steer", "compute", "--method", "concept", "--concepts", str(folder), "--to", "40", "--layer", "0",
                 "--out", str(tmp_path / "w.safetensors")]) == 2
    assert "the SAE reads layer 1" in capsys.readouterr().err


def test_concepts_cli_grounds_only_the_most_activated_features(tmp_path, samples, capsys):
    w = _weights(2)
    sae_dir = _saelens_folder(tmp_path / "sae", "jumprelu", w)
    rows = [{"id": f"s{i}", "image": samples[i % len(samples)]["image"], "question": "q?", "answer": "a"}
            for i in range(40)]
    store = xlvlm.FeatureStore.from_tensors({"1": X, "0": X.clone()}, rows, num_layers=2, path=tmp_path / "store")
    code = main(["concepts", "--features", str(store.path), "--dictionary", str(sae_dir), "--n-concepts", "5",
                 "--top-samples", "3", "--out", str(tmp_path / "run" / "c"), "--quiet"])
    assert code == 0, capsys.readouterr().err
    result = json.loads((tmp_path / "run" / "c" / "result.json").read_text())
    features = result["settings"]["features"]
    assert result["settings"]["layer"] == "1" and result["settings"]["method"] == "sae" and len(features) == 5
    assert [c["feature"] for c in result["concepts"]] == features
    assert result["metrics"]["sae_width"] == K and 0 < result["metrics"]["sae_mean_active_features"] < K
    cd = ConceptDictionary.load(tmp_path / "run" / "c" / "dictionary")
    assert cd.components.shape == (5, D)
    assert main(["report", str(tmp_path / "run")]) == 0
    assert "Concepts: c" in (tmp_path / "run" / "report.html").read_text()
    # a saved dictionary is grounded as it is (no learning), at the --layer it needs
    assert main(["concepts", "--features", str(store.path), "--dictionary", str(tmp_path / "run" / "c" / "dictionary"),
                 "--layer", "1", "--out", str(tmp_path / "again"), "--quiet"]) == 0
    again = json.loads((tmp_path / "again" / "result.json").read_text())
    assert again["settings"]["features"] == features and again["concepts"][0]["words"] == []
    assert ConceptDictionary.load(tmp_path / "again" / "dictionary").components.equal(cd.components)
    code = main(["concepts", "--features", str(store.path), "--dictionary", str(sae_dir), "--layer", "0",
                 "--out", str(tmp_path / "c2"), "--quiet"])
    assert code == 2 and "differs from the layer the SAE reads" in capsys.readouterr().err
    assert not (tmp_path / "c2").exists()


def test_analyse_shift_starts_from_an_sae_selection(tmp_path):
    sae = load_sae(_saelens_folder(tmp_path / "s", "jumprelu", _weights(3)))
    rows = [{"id": f"q{i}"} for i in range(X.shape[0])]
    o = xlvlm.FeatureStore.from_tensors({"1": X}, rows, path=tmp_path / "o")
    f = xlvlm.FeatureStore.from_tensors({"1": X + 1.0}, rows, path=tmp_path / "f")
    picked = sae.select(sae.top_features(X, 4))
    result = xlvlm.analyse_shift(o, f, 1, original_concepts=picked.to_dictionary(picked.transform(X)), method="kmeans")
    assert result.settings["method"] == "sae" and result.settings["finetuned_method"] == "kmeans"
    assert result.shift_vectors.shape == (4, D)
