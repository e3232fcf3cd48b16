"""Learned steering (L2S, "learning to steer"): predict each input's steering vector from its
own state.

Notation: x (D,) a sample's context state (its last prompt token at the context layer),
v (D,) its per-sample steering vector at the steering layer (P2S: t_i - s_i, see
:mod:`xlvlm.steer.per_sample`), H the hidden width of the network (100 in the research code).

    g(x) = W2 tanh(W1 x + b1) + b2        W1 (H, D), b1 (H,), W2 (D, H), b2 (D,)

Training (:meth:`LearnedSteering.fit`, CPU, seeded): the paired samples are split into train and
held-out parts; inputs are standardised with the train mean and standard deviation (folded into
W1, b1 afterwards, so the saved g reads raw states); b2 starts at the train mean vector and the
columns of W2 at the top-H principal directions of the centred train vectors, each scaled by
its standard deviation, so g starts as the fixed mean vector plus room for the input-dependent
part. Per sample the loss is

    MSE(g(x), v) + L1(g(x), v) - lambda_e cos(g(x), v)      (MSE, L1: means over the D dims)

with lambda_e rising linearly from 0 to ``cosine_weight`` over the epochs; Adam, minibatches,
a linear warm-up then cosine decay of the learning rate; the weights of the epoch with the
lowest held-out loss (at the full ``cosine_weight``) are kept.

At generation (:meth:`LearnedSteering.apply`), at each prefill the state of each sample's last
prompt token at the context layer is read and ``alpha * g(x)`` is added at the steering layer
(the positions rule, operator and condition of :meth:`SteeringVector.apply`), for the whole
generation. The context layer must be the steering layer or an earlier one; at the same layer,
the state is read before the layer's own edit.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from xlvlm.errors import XlvlmError
from xlvlm.io import atomic_save_tensors, read_tensors, refuse_existing_output
from xlvlm.layerkeys import layer_key
from xlvlm.progress import announce
from xlvlm.steer.protocol import SteeringBase

META_KEY = "xlvlm_learned_steering"
FORMAT = 1
TENSORS = ("encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias")
REMEDY = "retrain it with LearnedSteering.fit (or `xlvlm steer learn`)"


@dataclass
class LearnedSteering(SteeringBase):
    """g: context state (D,) -> steering vector (D,) at ``steer_layer``, read at ``context_layer``.

    encoder_weight (H, D), encoder_bias (H,), decoder_weight (D, H), decoder_bias (D,): float32.
    metadata: model, settings and the training report (``metadata["training"]``);
    history: per epoch ``{"epoch", "train_loss", "val_loss", "val_cosine"}``.
    """

    context_layer: str
    steer_layer: str
    encoder_weight: torch.Tensor
    encoder_bias: torch.Tensor
    decoder_weight: torch.Tensor
    decoder_bias: torch.Tensor
    metadata: dict = field(default_factory=dict)
    history: list = field(default_factory=list)

    def __post_init__(self):
        self.context_layer, self.steer_layer = layer_key(self.context_layer), layer_key(self.steer_layer)
        _check_weights(self.weights(), "learned steering")
        _check_order(self.context_layer, self.steer_layer, "learned steering")

    # ---- shapes ----------------------------------------------------------------------------
    @property
    def hidden(self) -> int:
        """H, the width of the network's hidden layer."""
        return int(self.encoder_weight.shape[0])

    @property
    def hidden_size(self) -> int:
        """D, the model's hidden size (of both the context state and the vector)."""
        return int(self.decoder_weight.shape[0])

    @property
    def layers(self) -> list[str]:
        """The steered layer, as a list (as a SteeringVector's)."""
        return [self.steer_layer]

    def weights(self) -> dict[str, torch.Tensor]:
        return dict(zip(TENSORS, (self.encoder_weight, self.encoder_bias, self.decoder_weight, self.decoder_bias)))

    # ---- training --------------------------------------------------------------------------
    # params: the documented hyperparameters, one keyword each (metadata records them)
    @classmethod
    def fit(cls, context, shifts, context_layer, steer_layer=None, hidden: int = 100, epochs: int = 100,
            lr: float = 1e-3, batch_size: int = 64, val_fraction: float = 0.1, cosine_weight: float = 0.1,
            seed: int = 0, progress: bool = False) -> "LearnedSteering":
        """Train g on the samples present in both ``context`` and ``shifts`` (paired by id).

        context: a store holding ``context_layer`` (one row per sample: e.g. ``last-prompt``
        states of the plain question). shifts: the per-sample vectors to predict, a
        :class:`~xlvlm.steer.per_sample.PerSampleSteering` or a store of them (its
        ``to_store()``); ``steer_layer`` is their layer (default: their only one).
        val_fraction of the pairs (at least one) is held out, chosen by ``seed``; 0 keeps
        every pair for training and the last epoch's weights. ``progress``: a line when the fit
        starts and one when it ends (:func:`xlvlm.progress.announce`).
        """
        settings = _settings(hidden, epochs, lr, batch_size, val_fraction, cosine_weight, seed)
        context_key = context.layer_key(context_layer)
        ids, x, y, steer_key, shifts_source = _pairs(context, context_key, shifts, steer_layer)
        _check_order(context_key, steer_key, "learned steering")
        started = time.perf_counter()
        train, val = _split(len(ids), val_fraction, seed)
        announce(f"learning steering {context_key} -> {steer_key}: {len(train)} training and {len(val)} held-out "
                 f"pairs, {epochs} epochs", progress)
        weights, history, best = _train(x, y, train, val, settings)
        seconds = time.perf_counter() - started
        announce(f"learnt in {seconds:.0f} s (best held-out epoch {best})", progress)
        report = _report(weights, x, y, train, val, best, seconds, settings["cosine_weight"])
        metadata = {"method": "learned", "model": getattr(context, "model", ""), "context": str(context.path),
                    "shifts": shifts_source, "context_layer": context_key, "steer_layer": steer_key,
                    "settings": settings, "training": report}
        return cls(context_key, steer_key, *weights, metadata=metadata, history=history)

    # ---- use -------------------------------------------------------------------------------
    def predict(self, states: torch.Tensor) -> torch.Tensor:
        """g(states): (N, D) context states -> (N, D) steering vectors (float32)."""
        states = torch.as_tensor(states)
        if states.dim() != 2 or states.shape[1] != self.hidden_size:
            raise XlvlmError(f"states have shape {tuple(states.shape)}; learned steering reads (N, "
                             f"{self.hidden_size}) context states")
        return _forward(self.weights(), states.float())

    # ---- the Steering protocol (xlvlm.steer.protocol): g of each sample's context state -------
    what = "learned steering (L2S)"

    def batch_vectors(self, states, sample_ids) -> dict[str, torch.Tensor]:
        """{steer_layer: (B, D)} g(x) of the batch's (B, D) context states. ``apply`` adds
        ``alpha * g(x)`` at ``steer_layer`` for each sample, x read at every prefill."""
        weights = {name: w.to(device=states.device, dtype=torch.float32) for name, w in self.weights().items()}
        return {self.steer_layer: _forward(weights, states.float())}

    # ---- files -----------------------------------------------------------------------------
    def save(self, path, overwrite: bool = False) -> Path:
        """Write a safetensors file: the four weights, and layers, sizes, settings, training report
        and history as JSON in the header; an existing file is refused unless ``overwrite=True``."""
        path = Path(path)
        refuse_existing_output(path, overwrite=overwrite, option="path")
        _check_weights(self.weights(), f"{path}: not written")
        header = {"format": FORMAT, "context_layer": self.context_layer, "steer_layer": self.steer_layer,
                  "hidden": self.hidden, "hidden_size": self.hidden_size, "metadata": self.metadata,
                  "history": self.history}
        atomic_save_tensors(path, {name: w.float() for name, w in self.weights().items()},
                            metadata={META_KEY: json.dumps(header)})
        return path

    @classmethod
    def load(cls, path) -> "LearnedSteering":
        """Read a file of :meth:`save` (or the folder of ``xlvlm steer learn`` holding one), checked:
        its header (layers, sizes), exactly the four weights with the shapes the header states, float
        and finite. Anything else is a one-line XlvlmError."""
        path = Path(path)
        if path.is_dir():  # a folder of `xlvlm steer learn`: its model file, if it is the one its result lists
            from xlvlm.io import RESULT_FILE, check_outputs

            if (path / RESULT_FILE).is_file():
                check_outputs(path / RESULT_FILE)
            path = path / LEARNED_FILE
        header, tensors = read_tensors(path, "learned steering file", REMEDY, header_key=META_KEY)

        def bad(what: str):
            raise XlvlmError(f"{path}: {what}; {REMEDY}")

        if not isinstance(header, dict):
            bad(f"its '{META_KEY}' header is not a JSON object")
        if header.get("format") != FORMAT:
            bad(f"format {str(header.get('format'))[:20]!r}, this xlvlm reads {FORMAT}")
        for name in ("context_layer", "steer_layer"):
            if not isinstance(header.get(name), str) or not header[name]:
                bad(f"field {name!r} is not a layer name")
        for name in ("hidden", "hidden_size"):
            value = header.get(name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                bad(f"field {name!r} is {str(value)[:20]!r}, not a positive integer")
        if sorted(tensors) != sorted(TENSORS):
            bad(f"holds tensors {', '.join(sorted(tensors)[:6]) or 'none'}; expected {', '.join(TENSORS)}")
        h, d = header["hidden"], header["hidden_size"]
        expected = {"encoder.weight": (h, d), "encoder.bias": (h,), "decoder.weight": (d, h), "decoder.bias": (d,)}
        for name, shape in expected.items():
            if tuple(tensors[name].shape) != shape:
                bad(f"{name} has shape {tuple(tensors[name].shape)}, the header's sizes (hidden {h}, hidden_size "
                    f"{d}) need {shape}")
        metadata = header.get("metadata", {})
        history = header.get("history", [])
        if not isinstance(metadata, dict) or not isinstance(history, list):
            bad("fields 'metadata' and 'history' must be an object and a list")
        try:
            _check_weights(tensors, str(path))
            _check_order(header["context_layer"], header["steer_layer"], str(path))
        except XlvlmError as exc:
            raise XlvlmError(f"{exc}; {REMEDY}") from None
        return cls(header["context_layer"], header["steer_layer"], *(tensors[n].float() for n in TENSORS),
                   metadata=metadata, history=history)

    def __repr__(self) -> str:
        report = self.metadata.get("training", {})
        cosine = report.get("val_cosine")
        return (f"LearnedSteering(context_layer={self.context_layer!r}, steer_layer={self.steer_layer!r}, "
                f"hidden={self.hidden}, hidden_size={self.hidden_size}"
                + (f", val_cosine={cosine:.3f})" if isinstance(cosine, float) else ")"))


LEARNED_FILE = "learned.safetensors"  # the file name inside a folder of `xlvlm steer learn`


# ---- the network -------------------------------------------------------------------------------
def _forward(weights: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (N, D): W2 tanh(W1 x + b1) + b2."""
    hidden = torch.tanh(x @ weights["encoder.weight"].T + weights["encoder.bias"])
    return hidden @ weights["decoder.weight"].T + weights["decoder.bias"]


def _check_weights(weights: dict[str, torch.Tensor], where: str) -> None:
    """Float, finite, and the shapes of one network: (H, D), (H,), (D, H), (D,)."""
    for name in TENSORS:
        w = weights[name]
        if not torch.is_tensor(w) or not w.is_floating_point():
            raise XlvlmError(f"{where}: {name} is not a float tensor")
        if not bool(torch.isfinite(w).all()):
            raise XlvlmError(f"{where}: {name} holds NaN or inf")
    h, d = weights["encoder.weight"].shape if weights["encoder.weight"].dim() == 2 else (-1, -1)
    expected = {"encoder.weight": (h, d), "encoder.bias": (h,), "decoder.weight": (d, h), "decoder.bias": (d,)}
    if h < 1 or d < 1 or any(tuple(weights[n].shape) != s for n, s in expected.items()):
        shapes = ", ".join(f"{n} {tuple(weights[n].shape)}" for n in TENSORS)
        raise XlvlmError(f"{where}: weight shapes {shapes} are not those of one network (H, D), (H,), (D, H), (D,)")


def _check_order(context_layer: str, steer_layer: str, where: str) -> None:
    """A context layer after the steering layer cannot be read before it is steered (block indices
    compared here when both are, "final" after every block; the rest is checked on the model)."""
    def depth(key: str):
        if key == "final":
            return math.inf
        return int(key) if key.isdigit() else None

    c, s = depth(context_layer), depth(steer_layer)
    if c is not None and s is not None and c > s:
        raise XlvlmError(f"{where}: context layer {context_layer} comes after the steering layer {steer_layer}; "
                         f"use a context layer at or before the layer it steers")


# ---- training ----------------------------------------------------------------------------------
def _settings(hidden, epochs, lr, batch_size, val_fraction, cosine_weight, seed) -> dict:
    def positive_int(name, value):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise XlvlmError(f"{name} must be a positive integer, not {value!r}")
        return value

    settings = {"hidden": positive_int("hidden", hidden), "epochs": positive_int("epochs", epochs),
                "batch_size": positive_int("batch_size", batch_size)}
    for name, value, low, high in (("lr", lr, 0.0, math.inf), ("val_fraction", val_fraction, 0.0, 0.5),
                                   ("cosine_weight", cosine_weight, 0.0, math.inf)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not low <= value <= high or (name == "lr" and value == 0):
            above = " above 0" if name == "lr" else ""
            raise XlvlmError(f"{name} must be a finite number in [{low:g}, {high:g}]{above}, not {value!r}")
        settings[name] = float(value)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise XlvlmError(f"seed must be an integer, not {seed!r}")
    settings["seed"] = seed
    return settings


def _pairs(context, context_key: str, shifts, steer_layer):
    """(ids, x (P, D), y (P, D), steer key, where the vectors came from) over the sample ids present in
    both, in the shifts' order."""
    from xlvlm.features.pairing import paired_rows
    from xlvlm.steer.per_sample import PerSampleSteering

    per_sample = isinstance(shifts, PerSampleSteering)
    what = "the per-sample vectors" if per_sample else f"store {shifts.path}"
    if steer_layer is None and len(shifts.layers) != 1:
        raise XlvlmError(f"{what} hold layers {', '.join(shifts.layers)}: pick one with steer_layer")
    steer_key = layer_key(shifts.layers[0] if steer_layer is None else steer_layer)
    if per_sample:
        if steer_key not in shifts.vectors:
            raise XlvlmError(f"the per-sample vectors have no layer {steer_key} (they have {', '.join(shifts.layers)})")
        source = shifts.metadata.get("source") and f"{shifts.metadata.get('source')} -> {shifts.metadata.get('target')}"
        source, shifts = source or "per-sample vectors", shifts.to_store()
    else:
        steer_key, source = shifts.layer_key(steer_key), str(shifts.path)
    y, x, ids = paired_rows(shifts, context, steer_key, "learned steering", second_layer=context_key)
    if len(ids) < 2:
        raise XlvlmError(f"store {context.path} and {what} share one sample; learned steering needs at least 2")
    for name, rows in (("context states", x), ("vectors", y)):
        if not bool(torch.isfinite(rows).all()):
            raise XlvlmError(f"the {name} hold NaN or inf; check the stores with FeatureStore.verify()")
    return ids, x, y, steer_key, source


def _split(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and held-out indices: a seeded permutation; at least one held out when val_fraction > 0."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = 0 if val_fraction == 0 else min(n - 1, max(1, round(val_fraction * n)))
    return order[n_val:].sort().values, order[:n_val].sort().values


def _per_sample_loss(pred: torch.Tensor, target: torch.Tensor, cosine_weight: float) -> torch.Tensor:
    """(N, D), (N, D) -> (N,): MSE + L1 - cosine_weight * cos."""
    diff = pred - target
    cos = torch.nn.functional.cosine_similarity(pred, target, dim=1, eps=1e-12)
    return diff.pow(2).mean(1) + diff.abs().mean(1) - cosine_weight * cos


def _initial_weights(x_train: torch.Tensor, y_train: torch.Tensor, hidden: int, generator) -> dict:
    """Encoder as torch's Linear default (uniform +-1/sqrt(D)); decoder bias the mean vector,
    decoder columns the top principal directions of the centred vectors scaled by their standard
    deviation (zero beyond the rank of the data)."""
    d = x_train.shape[1]
    bound = 1.0 / math.sqrt(d)
    encoder_weight = (torch.rand(hidden, d, generator=generator) * 2 - 1) * bound
    encoder_bias = (torch.rand(hidden, generator=generator) * 2 - 1) * bound
    mean = y_train.mean(0)
    centred = y_train - mean
    _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
    k = min(hidden, vh.shape[0])
    decoder_weight = torch.zeros(d, hidden)
    decoder_weight[:, :k] = (vh[:k] * (singular[:k, None] / math.sqrt(max(1, len(y_train))))).T
    return {"encoder.weight": encoder_weight, "encoder.bias": encoder_bias, "decoder.weight": decoder_weight,
            "decoder.bias": mean.clone()}


def _train(x: torch.Tensor, y: torch.Tensor, train: torch.Tensor, val: torch.Tensor, settings: dict):
    """Train on the standardised inputs; returns (the four raw-input weights, history, best epoch)."""
    generator = torch.Generator().manual_seed(settings["seed"])
    x_train, y_train = x[train], y[train]
    mu, sigma = x_train.mean(0), x_train.std(0, unbiased=False).clamp_min(1e-6)
    standard = (x - mu) / sigma
    params = {k: v.requires_grad_() for k, v in _initial_weights(standard[train], y_train, settings["hidden"],
                                                                 generator).items()}
    optimiser = torch.optim.Adam(params.values(), lr=settings["lr"])
    epochs, batch_size, weight = settings["epochs"], settings["batch_size"], settings["cosine_weight"]
    steps_per_epoch = math.ceil(len(train) / batch_size)
    total, warmup = epochs * steps_per_epoch, min(5, epochs) * steps_per_epoch

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, schedule)
    history, best, best_loss, best_params = [], epochs, math.inf, None
    for epoch in range(1, epochs + 1):
        ramp = weight * epoch / epochs
        order = train[torch.randperm(len(train), generator=generator)]
        running = 0.0
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            loss = _per_sample_loss(_forward(params, standard[rows]), y[rows], ramp).mean()
            if not bool(torch.isfinite(loss)):
                raise XlvlmError(f"learned steering diverged at epoch {epoch} (the loss is NaN or inf); use a lower "
                                 f"lr than {settings['lr']:g}")
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            scheduler.step()
            running += float(loss.detach()) * len(rows)
        record = {"epoch": epoch, "train_loss": running / len(order)}
        if len(val):
            with torch.no_grad():
                pred = _forward(params, standard[val])
                record["val_loss"] = float(_per_sample_loss(pred, y[val], weight).mean())
                record["val_cosine"] = float(torch.nn.functional.cosine_similarity(pred, y[val], dim=1).mean())
            if record["val_loss"] < best_loss:
                best, best_loss = epoch, record["val_loss"]
                best_params = {k: v.detach().clone() for k, v in params.items()}
        history.append(record)
    final = best_params if best_params is not None else {k: v.detach().clone() for k, v in params.items()}
    # Fold the standardisation into the encoder: W1 ((x - mu) / sigma) + b1 = (W1 / sigma) x + (b1 - (W1 / sigma) mu).
    encoder_weight = final["encoder.weight"] / sigma
    encoder_bias = final["encoder.bias"] - encoder_weight @ mu
    return (encoder_weight, encoder_bias, final["decoder.weight"], final["decoder.bias"]), history, best


def _report(weights, x, y, train, val, best: int, seconds: float, cosine_weight: float) -> dict:
    """Losses, cosines and relative errors on train and held-out samples, for g and for the fixed
    train-mean vector (what input dependence adds over a fixed vector). Losses are the training
    objective at the full cosine weight."""
    named = dict(zip(TENSORS, weights))
    mean = y[train].mean(0)
    report = {"n_train": int(len(train)), "n_val": int(len(val)), "best_epoch": best, "seconds": round(seconds, 3)}
    with torch.no_grad():
        for part, index in (("train", train), ("val", val)):
            if not len(index):
                continue
            target = y[index]
            pred = _forward(named, x[index])
            fixed = mean.expand_as(target)
            norm = target.norm(dim=1).clamp_min(1e-12)
            report[f"{part}_loss"] = float(_per_sample_loss(pred, target, cosine_weight).mean())
            report[f"{part}_cosine"] = float(torch.nn.functional.cosine_similarity(pred, target, dim=1).mean())
            report[f"{part}_relative_error"] = float(((pred - target).norm(dim=1) / norm).mean())
            report[f"mean_vector_{part}_cosine"] = float(
                torch.nn.functional.cosine_similarity(fixed, target, dim=1).mean())
            report[f"mean_vector_{part}_relative_error"] = float(((fixed - target).norm(dim=1) / norm).mean())
    return report
