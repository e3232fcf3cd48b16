"""Sparse autoencoders as files: read SAELens's saved format and Gemma Scope's published
parameter files (:func:`load_sae`), and write SAELens's format (:func:`save_sae`).

Read (all untrusted: safetensors, JSON and numpy arrays only, never pickle):

* SAELens (``SAE.save_model``): a folder with ``cfg.json`` (``architecture``: standard, topk,
  jumprelu or gated; ``d_in``, ``d_sae``, ``apply_b_dec_to_input``, ``k``, ``metadata.hook_name``)
  and ``sae_weights.safetensors`` (``W_enc`` (D, K), ``W_dec`` (K, D), ``b_enc`` (K,),
  ``b_dec`` (D,), plus ``threshold`` (K,) for JumpReLU, ``b_gate``/``b_mag``/``r_mag`` for gated).
* Gemma Scope (Gemma 2): ``params.npz`` with ``W_enc``, ``W_dec``, ``b_enc``, ``b_dec``,
  ``threshold``; JumpReLU, no pre-encoder bias. Its layer is read from the path as published
  (``.../gemma-scope-2b-pt-res/layer_20/width_16k/average_l0_71/params.npz``).
* Gemma Scope 2 (Gemma 3): ``params.safetensors`` with ``w_enc``, ``w_dec``, ``b_enc``,
  ``b_dec``, ``threshold``, its site and layer in the path as published
  (``.../resid_post/layer_12_width_16k_l0_medium/params.safetensors``).

Written: SAELens's folder, for a pretrained SAE and for this package's TopK SAE (its input
scale folded into the weights, so SAELens's codes are this package's codes).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from xlvlm.concepts.dictionary import read_json
from xlvlm.concepts.estimators.pretrained import PretrainedSAE
from xlvlm.errors import XlvlmError
from xlvlm.io import atomic_save_tensors, atomic_write_json

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
GEMMA_SCOPE_FILE = "params.npz"
GEMMA_SCOPE_2_FILE = "params.safetensors"
# SAELens calls the ReLU architecture "standard".
_SAELENS_NAMES = {"standard": "relu", "relu": "relu", "topk": "topk", "jumprelu": "jumprelu", "gated": "gated"}
# Normalisations that SAELens's encode leaves the input alone under (the expected-average
# scaling is folded into the weights at download, or applied at training time only).
_IDENTITY_NORMS = (None, "none", "expected_average_only_in")
# Gemma Scope's sites as its paths name them (Gemma 2 repositories end -res/-mlp/-att; Gemma
# Scope 2 folders are resid_post, mlp_out, attn_out) -> SAELens's hook names.
_SITES = ((r"resid_post|(^|-)res($|-)", "hook_resid_post"), (r"mlp_out|(^|-)mlp($|-)", "hook_mlp_out"),
          (r"attn_out|(^|-)att($|-)", "hook_attn_out"))


def load_sae(path, device=None, hook_name: str | None = None) -> PretrainedSAE:
    """A pretrained SAE from ``path``: a SAELens folder (or its cfg.json), a Gemma Scope
    ``params.npz``, or a Gemma Scope 2 ``params.safetensors`` (or the folder holding one).

    Returns a :class:`~xlvlm.concepts.estimators.pretrained.PretrainedSAE` on ``device`` (CPU):
    ``transform`` (N, D) -> (N, d_sae), ``inverse_transform``, ``components_`` (d_sae, D), and
    ``layer``, the layer key its hook point reads. ``hook_name`` overrides the hook point when
    the files do not say it (e.g. ``"blocks.12.hook_resid_post"``).
    """
    file = Path(path)
    folder = file if file.is_dir() else file.parent
    if (folder / CFG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file():
        sae = _read_saelens(folder)
    elif file.suffix == ".npz" or (folder / GEMMA_SCOPE_FILE).is_file():
        sae = _read_gemma_scope(file if file.suffix == ".npz" else folder / GEMMA_SCOPE_FILE)
    elif file.name == GEMMA_SCOPE_2_FILE or (folder / GEMMA_SCOPE_2_FILE).is_file():
        sae = _read_gemma_scope_2(file if file.is_file() else folder / GEMMA_SCOPE_2_FILE)
    else:
        raise XlvlmError(f"{path}: no SAE found (a SAELens folder with {CFG_FILE} + {WEIGHTS_FILE}, a Gemma Scope "
                         f"{GEMMA_SCOPE_FILE} or a Gemma Scope 2 {GEMMA_SCOPE_2_FILE}); check the path")
    if hook_name is not None:
        sae.hook_name = hook_name
    return sae if device is None else _moved(sae, device)


def _moved(sae: PretrainedSAE, device) -> PretrainedSAE:
    moved = PretrainedSAE(**sae.get_params())
    moved._learned(sae.components_.to(device), {k: v.to(device) for k, v in sae.state_.items()}, dict(sae.info_))
    return moved


# ---- reading -------------------------------------------------------------------------------------
def _read_json(path: Path) -> dict:
    value = read_json(path, "download the SAE again")
    if not isinstance(value, dict):
        raise XlvlmError(f"{path}: not a JSON object; download the SAE again")
    return value


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise XlvlmError(f"{path}: unreadable safetensors ({exc}); download the SAE again")


def _read_npz(path: Path) -> dict[str, torch.Tensor]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: torch.from_numpy(np.array(data[name])) for name in data.files}
    except (ValueError, OSError, EOFError) as exc:
        raise XlvlmError(f"{path}: not a readable numpy .npz of arrays ({exc}); download the SAE again")


def _config_value(cfg: dict, key: str, kind: type, path: Path):
    """``cfg[key]`` (or SAELens 6's ``cfg["metadata"][key]``) checked to be a ``kind`` (an int:
    a positive one); None when absent."""
    metadata = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    value = cfg.get(key, metadata.get(key))
    if value is None:
        return None
    if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise XlvlmError(f"{path}: field {key!r} is {value!r}, not a positive integer; download the SAE again")
    if not isinstance(value, kind):
        raise XlvlmError(f"{path}: field {key!r} is {value!r}, not a {kind.__name__}; download the SAE again")
    return value


def _read_saelens(folder: Path) -> PretrainedSAE:
    cfg_path = folder / CFG_FILE
    cfg = _read_json(cfg_path)
    name = cfg.get("architecture", "standard")
    if name not in _SAELENS_NAMES:
        raise XlvlmError(f"{cfg_path}: architecture {name!r} is not one xlvlm reads; use one of: "
                         f"{', '.join(_SAELENS_NAMES)}")
    # SAELens before 6.0 spelt some fields differently; read either.
    hook = _config_value(cfg, "hook_name", str, cfg_path) or _config_value(cfg, "hook_point", str, cfg_path)
    norm = cfg.get("normalize_activations")
    if norm not in _IDENTITY_NORMS and norm is not False:
        raise XlvlmError(f"{cfg_path}: normalize_activations {norm!r} rescales each input at run time, which "
                         "xlvlm does not do; fold it into the weights or use an SAE without it")
    architecture = _SAELENS_NAMES[name]
    if cfg.get("activation_fn") == "topk" and isinstance(cfg.get("activation_fn_kwargs"), dict):
        architecture, cfg = "topk", {**cfg, "k": cfg["activation_fn_kwargs"].get("k")}  # SAELens before 6.0
    apply_bias = _config_value(cfg, "apply_b_dec_to_input", bool, cfg_path)
    options = {"architecture": architecture, "k": _config_value(cfg, "k", int, cfg_path) if architecture == "topk"
               else None, "hook_name": hook, "apply_b_dec_to_input": True if apply_bias is None else apply_bias,
               "model_name": _config_value(cfg, "model_name", str, cfg_path)}
    tensors = _read_safetensors(folder / WEIGHTS_FILE)
    sae = _build(tensors, options, folder / WEIGHTS_FILE, _config_value(cfg, "d_in", int, cfg_path),
                 _config_value(cfg, "d_sae", int, cfg_path))
    return _fold_decoder_norms(sae) if architecture == "topk" and cfg.get("rescale_acts_by_decoder_norm") else sae


def _fold_decoder_norms(sae: PretrainedSAE) -> PretrainedSAE:
    """A TopK SAE that ranks pre * ||W_dec row|| and decodes codes / ||W_dec row||
    (SAELens's ``rescale_acts_by_decoder_norm``), as a plain one: the norms folded into the
    encoder, unit decoder rows. Same codes, same reconstruction."""
    norms = sae.components_.norm(dim=1).clamp_min(1e-30)
    state = dict(sae.state_, encoder=sae.state_["encoder"] * norms[:, None],
                 encoder_bias=sae.state_["encoder_bias"] * norms)
    sae._learned(sae.components_ / norms[:, None], state, sae.info_)
    return sae


def _path_hook(path: Path) -> str | None:
    """The hook point that a Gemma Scope path names: its layer (``layer_20``) and site (the
    repository's ``-res``/``-mlp``/``-att`` or Gemma Scope 2's ``resid_post``/``mlp_out``/... folder)."""
    layer = re.search(r"(?:^|/)layer_(\d+)", path.as_posix())
    if layer is None:
        return None
    for part in reversed(path.parts):  # the nearest folder that names a site decides
        site = next((hook for pattern, hook in _SITES if re.search(pattern, part)), None)
        if site is not None:
            return f"blocks.{int(layer.group(1))}.{site}"
    return f"blocks.{int(layer.group(1))}.hook_resid_post"


def _read_gemma_scope(path: Path) -> PretrainedSAE:
    tensors = {re.sub(r"^w_", "W_", name): t for name, t in _read_npz(path).items()}
    options = {"architecture": "jumprelu", "k": None, "apply_b_dec_to_input": False,
               "hook_name": _path_hook(path), "model_name": None}
    return _build(tensors, options, path)


_HF_RESID = re.compile(r"^model\.layers\.(\d+)\.output$")


def _read_gemma_scope_2(path: Path) -> PretrainedSAE:
    """params.safetensors, and the config.json published beside some (``architecture``
    "jump_relu", ``model_name``, ``hf_hook_point_in`` such as ``model.layers.12.output``)."""
    if re.search(r"transcoder|(^|[/_-])clt", path.parent.as_posix()):
        raise XlvlmError(f"{path}: a transcoder maps an MLP's input to its output, not a dictionary of one "
                         "stream; use a resid_post SAE")
    cfg = _read_json(path.parent / "config.json") if (path.parent / "config.json").is_file() else {}
    if cfg.get("architecture", "jump_relu") != "jump_relu":
        raise XlvlmError(f"{path.parent / 'config.json'}: architecture {cfg.get('architecture')!r} is not "
                         "Gemma Scope 2's jump_relu; check the file")
    hook = _path_hook(path)
    hf_hook = cfg.get("hf_hook_point_in")
    if isinstance(hf_hook, str) and (match := _HF_RESID.match(hf_hook)):
        hook = f"blocks.{match.group(1)}.hook_resid_post"
    tensors = {re.sub(r"^w_", "W_", name): t for name, t in _read_safetensors(path).items()}
    model = cfg.get("model_name") if isinstance(cfg.get("model_name"), str) else None
    options = {"architecture": "jumprelu", "k": None, "apply_b_dec_to_input": False, "hook_name": hook,
               "model_name": model}
    return _build(tensors, options, path)


_NEEDED = {"relu": ("b_enc",), "topk": ("b_enc",), "jumprelu": ("b_enc", "threshold"),
           "gated": ("b_gate", "b_mag", "r_mag")}


def _build(tensors: dict, options: dict, path: Path, d_in: int | None = None, d_sae: int | None = None) -> PretrainedSAE:
    """The estimator of SAELens-named tensors (``W_enc`` (D, K), ``W_dec`` (K, D), biases), checked."""
    architecture = options["architecture"]
    for name in ("W_enc", "W_dec", "b_dec", *_NEEDED[architecture]):
        if name not in tensors:
            raise XlvlmError(f"{path}: tensor {name!r} is missing for a {architecture} SAE; download the SAE again")
    W_dec = tensors["W_dec"]
    if W_dec.ndim != 2:
        raise XlvlmError(f"{path}: W_dec has shape {tuple(W_dec.shape)}, not (d_sae, d_in); download the SAE again")
    k_sae, d = W_dec.shape
    expected = {"W_enc": (d, k_sae), "b_dec": (d,), "b_enc": (k_sae,), "threshold": (k_sae,), "b_gate": (k_sae,),
                "b_mag": (k_sae,), "r_mag": (k_sae,)}
    for name in ("W_enc", "b_dec", *_NEEDED[architecture]):
        tensor = tensors[name]
        if tuple(tensor.shape) != expected[name] or not tensor.is_floating_point():
            raise XlvlmError(f"{path}: {name} has shape {tuple(tensor.shape)} ({tensor.dtype}), expected "
                             f"{expected[name]} float for W_dec {tuple(W_dec.shape)}; download the SAE again")
        if not bool(torch.isfinite(tensor).all()):
            raise XlvlmError(f"{path}: {name} holds NaN or inf; download the SAE again")
    if (d_in is not None and d_in != d) or (d_sae is not None and d_sae != k_sae):
        raise XlvlmError(f"{path}: the config says d_in={d_in}, d_sae={d_sae} but W_dec is {tuple(W_dec.shape)}; "
                         "download the SAE again")
    if architecture == "topk" and not (isinstance(options["k"], int) and options["k"] >= 1):
        raise XlvlmError(f"{path}: a topk SAE needs a positive integer k in its config; download the SAE again")
    as32 = {name: t.float().contiguous() for name, t in tensors.items()}
    state = {"encoder": as32["W_enc"].T.contiguous(), "decoder_bias": as32["b_dec"]}
    names = {"b_enc": "encoder_bias", "threshold": "threshold", "b_gate": "gate_bias", "b_mag": "magnitude_bias",
             "r_mag": "magnitude_log_scale"}
    state.update({names[name]: as32[name] for name in _NEEDED[architecture]})
    sae = PretrainedSAE(n_concepts=k_sae, d_sae=k_sae, **options)
    sae._learned(as32["W_dec"], state, {"source": str(path)})
    return sae


# ---- writing -------------------------------------------------------------------------------------
# The SAELens config format written (6.x: the fields below, hook and model under "metadata").
SAELENS_FORMAT_VERSION = "6.0.0"


def save_sae(sae, folder, hook_name: str | None = None, model_name: str | None = None,
             overwrite: bool = False) -> Path:
    """Write ``sae`` in SAELens's format (``cfg.json`` + ``sae_weights.safetensors``) to ``folder``;
    returns it. ``sae``: a loaded :class:`PretrainedSAE`, this package's fitted ``TopKSAE``, or a
    ConceptDictionary of either. ``hook_name`` (e.g. ``"blocks.2.hook_resid_post"``) and
    ``model_name`` go into the config's metadata (a loaded SAE keeps its own by default).
    SAELens's ``SAE.load_from_disk(folder)`` then encodes as ``sae.transform`` does."""
    from xlvlm.io import refuse_existing_output

    weights, cfg = _saelens_tensors(_as_estimator(sae))
    cfg["metadata"].update({k: v for k, v in (("hook_name", hook_name), ("model_name", model_name)) if v})
    out = Path(folder)
    refuse_existing_output(out, overwrite=overwrite, option="folder")
    out.mkdir(parents=True, exist_ok=True)
    # Weights first, config last: a folder whose config is missing is not taken for a saved SAE.
    atomic_save_tensors(out / WEIGHTS_FILE, weights)
    atomic_write_json(out / CFG_FILE, cfg)
    return out


def _as_estimator(sae):
    """A fitted estimator with an SAE encoder, from an estimator or a ConceptDictionary."""
    from xlvlm.concepts.dictionary import ConceptDictionary
    from xlvlm.concepts.registry import get_method

    if isinstance(sae, ConceptDictionary):
        sae = get_method(sae.method).from_dictionary(sae)
    if getattr(sae, "name", None) not in ("sae", "topk-sae"):
        raise XlvlmError(f"{type(sae).__name__} ({getattr(sae, 'name', '?')}) has no SAE encoder to save in SAELens's "
                         "format; save a TopKSAE or a loaded SAE")
    sae._fitted()
    return sae


def _saelens_tensors(sae) -> tuple[dict[str, torch.Tensor], dict]:
    """SAELens's weights (W_enc (D, K), W_dec (K, D), biases) and cfg.json of a fitted SAE."""
    V, state = sae.components_, sae.state_
    if sae.name == "topk-sae":
        from xlvlm.concepts.solvers.sae import active_count

        # This package's TopK SAE codes Z / s: with W' = W / s and b' = s b the codes of Z are
        # the same, and s V decodes them back (s the input scale of the fit).
        s = state["scale"]
        weights = {"W_enc": (state["encoder"] / s).T, "b_enc": state["encoder_bias"], "W_dec": V * s,
                   "b_dec": state["decoder_bias"] * s}
        arch = {"architecture": "topk", "k": active_count(sae.k_active, V.shape[0]), "apply_b_dec_to_input": True}
        hook = None
    else:
        if sae.architecture == "topk" and sae.features is not None and len(sae.features) != sae.d_sae:
            raise XlvlmError("a TopK SAE ranks all its features: save the SAE before selecting features")
        names = {"encoder_bias": "b_enc", "threshold": "threshold", "gate_bias": "b_gate",
                 "magnitude_bias": "b_mag", "magnitude_log_scale": "r_mag"}
        weights = {"W_enc": state["encoder"].T, "W_dec": V, "b_dec": state["decoder_bias"],
                   **{names[n]: t for n, t in state.items() if n in names}}
        arch = {"architecture": "standard" if sae.architecture == "relu" else sae.architecture,
                "apply_b_dec_to_input": bool(sae.apply_b_dec_to_input)}
        if sae.architecture == "topk":
            arch.update(k=int(sae.k))
        hook = sae.hook_name
    cfg = {**arch, "d_in": int(V.shape[1]), "d_sae": int(V.shape[0]), "dtype": "float32", "device": "cpu",
           "normalize_activations": "none", "reshape_activations": "none",
           "metadata": {"sae_lens_version": SAELENS_FORMAT_VERSION, "hook_name": hook,
                        "model_name": getattr(sae, "model_name", None)}}
    return {name: t.detach().float().contiguous().cpu() for name, t in weights.items()}, cfg
