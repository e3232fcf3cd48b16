"""load_sae and save_sae against SAELens itself: its encode/decode of an SAE it saved equal
load_sae's transform/inverse_transform, and it loads what save_sae writes with the same codes.

Needs ``sae_lens``, which the project's venv does not carry: ``bash bench/saelens_env.sh`` builds
bench/.venv-saelens, and ``bash bench/saelens_check.sh`` runs this file there (bench/RESULTS.md).
"""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from xlvlm.concepts import TopKSAE, load_sae, save_sae

sae_lens = pytest.importorskip("sae_lens")
loaders = pytest.importorskip("sae_lens.loading.pretrained_sae_loaders")

D, K, TOL = 24, 96, 1e-5


def _planted(architecture: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Weights with some features on and some off for every row of _inputs()."""
    g = torch.Generator().manual_seed(seed)
    weights = {"W_enc": torch.randn(D, K, generator=g) / D ** 0.5, "W_dec": torch.randn(K, D, generator=g),
               "b_dec": torch.randn(D, generator=g) * 0.1}
    if architecture == "gated":
        weights.update(b_gate=torch.randn(K, generator=g) * 0.1, b_mag=torch.randn(K, generator=g) * 0.1,
                       r_mag=torch.randn(K, generator=g) * 0.1)
    else:
        weights["b_enc"] = torch.randn(K, generator=g) * 0.1
    if architecture == "jumprelu":
        weights["threshold"] = torch.rand(K, generator=g) * 0.5
    return weights


def _inputs(seed: int = 1) -> torch.Tensor:
    return torch.randn(64, D, generator=torch.Generator().manual_seed(seed))


def _saelens_sae(architecture: str, **extra):
    """An SAELens SAE of ``architecture`` holding the planted weights."""
    cfg = {"architecture": architecture, "d_in": D, "d_sae": K, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": architecture != "jumprelu",
           "metadata": {"hook_name": "blocks.2.hook_resid_post", "model_name": "planted"}, **extra}
    sae = sae_lens.SAE.from_dict(cfg)
    sae.load_state_dict(_planted(architecture), strict=True)
    return sae


def _close(a, b) -> None:
    assert a.shape == b.shape
    assert float((a.float() - b.float()).abs().max()) <= TOL


CASES = [("standard", {}), ("topk", {"k": 8}), ("topk", {"k": 8, "rescale_acts_by_decoder_norm": True}),
         ("jumprelu", {}), ("gated", {})]


@pytest.mark.parametrize(("architecture", "extra"), CASES)
def test_load_sae_encodes_and_decodes_as_saelens(tmp_path, architecture, extra):
    reference = _saelens_sae(architecture, **extra)
    reference.save_model(tmp_path / "sae")
    ours = load_sae(tmp_path / "sae")
    X = _inputs()
    with torch.no_grad():
        codes = reference.encode(X)
        _close(ours.transform(X), codes)
        _close(ours.inverse_transform(codes), reference.decode(codes))
    assert 0 < float((codes > 0).float().mean()) < 1  # some features on, some off: the test can fail
    assert ours.layer == "2"


@pytest.mark.parametrize(("architecture", "extra"), CASES)
def test_saelens_loads_what_save_sae_writes(tmp_path, architecture, extra):
    reference = _saelens_sae(architecture, **extra)
    reference.save_model(tmp_path / "sae")
    ours = load_sae(tmp_path / "sae")
    save_sae(ours, tmp_path / "export")
    back = sae_lens.SAE.load_from_disk(str(tmp_path / "export"))
    X = _inputs(2)
    with torch.no_grad():
        codes = back.encode(X)
        _close(codes, ours.transform(X))
        _close(back.decode(codes), ours.inverse_transform(codes))
    assert back.cfg.metadata.hook_name == "blocks.2.hook_resid_post"


def test_saelens_loads_this_packages_topk_sae(tmp_path):
    X = _inputs(3) * 3 + 1
    ours = TopKSAE(n_concepts=16, k_active=4, steps=60, seed=0).fit(X)
    save_sae(ours, tmp_path / "export", hook_name="blocks.1.hook_resid_post", model_name="organism:original")
    back = sae_lens.SAE.load_from_disk(str(tmp_path / "export"))
    with torch.no_grad():
        codes = back.encode(X)
        _close(codes, ours.transform(X))
        _close(back.decode(codes), ours.inverse_transform(ours.transform(X)))
    assert type(back).__name__ == "TopKSAE" and back.cfg.k == 4


def _local_hub(monkeypatch, root):
    """SAELens's Hugging Face loaders reading files under ``root`` (no network here)."""
    from safetensors import safe_open

    def download(repo_id, filename, subfolder=None, **_):
        path = root / repo_id / (f"{subfolder}/{filename}" if subfolder else filename)
        if not path.exists():
            raise loaders.EntryNotFoundError(str(path))
        return str(path)

    def shapes(repo_id, filename):
        with safe_open(str(root / repo_id / filename), framework="pt") as f:
            return {name: list(f.get_slice(name).get_shape()) for name in f.keys()}

    monkeypatch.setattr(loaders, "hf_hub_download", download)
    monkeypatch.setattr(loaders, "get_safetensors_tensor_shapes", shapes)


def _saelens_from_loader(cfg: dict, state: dict):
    cfg = loaders.handle_config_defaulting(cfg) if "metadata" not in cfg else cfg
    sae = sae_lens.SAE.from_dict(cfg)
    sae.load_state_dict(state, strict=True)
    return sae


def test_gemma_scope_2_file_reads_as_saelens_reads_it(tmp_path, monkeypatch):
    repo, folder = "google/gemma-scope-2-4b-it", "resid_post/layer_17_width_16k_l0_medium"
    weights = _planted("jumprelu", seed=4)
    (tmp_path / repo / folder).mkdir(parents=True)
    save_file({"w_enc": weights["W_enc"], "w_dec": weights["W_dec"], "b_enc": weights["b_enc"],
               "b_dec": weights["b_dec"], "threshold": weights["threshold"]},
              str(tmp_path / repo / folder / "params.safetensors"))
    _local_hub(monkeypatch, tmp_path)
    cfg, state, _ = loaders.gemma_3_sae_huggingface_loader(repo, folder)
    reference = _saelens_from_loader(cfg, state)
    ours = load_sae(tmp_path / repo / folder)
    X = _inputs(5)
    with torch.no_grad():
        _close(ours.transform(X), reference.encode(X))
    assert ours.hook_name == cfg["hook_name"] == "blocks.17.hook_resid_post" and ours.layer == "17"


def test_gemma_scope_file_reads_as_saelens_reads_it(tmp_path, monkeypatch):
    repo, folder = "google/gemma-scope-2b-pt-res", "layer_20/width_16k/average_l0_71"
    weights = _planted("jumprelu", seed=6)
    (tmp_path / repo / folder).mkdir(parents=True)
    np.savez(tmp_path / repo / folder / "params.npz", **{name: t.numpy() for name, t in weights.items()})
    _local_hub(monkeypatch, tmp_path)
    cfg, state, _ = loaders.gemma_2_sae_huggingface_loader(repo, folder)
    cfg.update(d_in=D, d_sae=K)  # SAELens takes d_in from its table of Gemma 2 sizes
    reference = _saelens_from_loader(cfg, state)
    ours = load_sae(tmp_path / repo / folder / "params.npz")
    X = _inputs(7)
    with torch.no_grad():
        _close(ours.transform(X), reference.encode(X))
    assert ours.hook_name == cfg["hook_name"] == "blocks.20.hook_resid_post"
