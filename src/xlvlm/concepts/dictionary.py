"""ConceptDictionary: a learned concept basis, its training activations, and how to use it.

Notation: ``xlvlm.concepts``'s: Z (N, D) features, U (N, K) activations, V (K, D) components.

Saved as a folder holding ``concepts.safetensors`` (components, activations and any
method state, float32) and ``concepts.json`` (method, parameters, fit diagnostics, shapes and
the SHA-256 of the tensor file). Both are written atomically, tensors first, so the JSON is
the commit mark: a folder whose JSON names another tensor file content is refused on load.
No pickle anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from xlvlm.concepts._validate import as_features
from xlvlm.errors import XlvlmError
from xlvlm.io import atomic_save_tensors, atomic_write_json, sha256_file
from xlvlm.runs import DICTIONARY_META, DICTIONARY_TENSORS

FORMAT = "xlvlm.concepts"
VERSION = 1
TENSORS_FILE = DICTIONARY_TENSORS  # the names a run folder's reader (xlvlm.runs) owns
META_FILE = DICTIONARY_META


class ConceptDictionary:
    """A concept dictionary learned by :func:`xlvlm.concepts.learn_concepts`.

    components: (K, D) float32, one concept direction per row;
    activations: (N, K) float32, the training rows' codes (what ``transform`` gives for them);
    method: the method's name; params: every option used, with ``n_concepts`` and ``seed``;
    state: extra tensors the method's encoder/decoder needs (e.g. the PCA mean (D,));
    info: fit diagnostics (iterations, convergence, final objective), JSON values.
    """

    def __init__(
        self,
        components: torch.Tensor,
        activations: torch.Tensor,
        method: str,
        params: dict[str, Any],
        state: dict[str, torch.Tensor] | None = None,
        info: dict[str, Any] | None = None,
    ):
        self.components = components
        self.activations = activations
        self.method = method
        self.params = params
        self.state = state if state is not None else {}
        self.info = info if info is not None else {}

    @property
    def n_concepts(self) -> int:
        return self.components.shape[0]

    @property
    def n_features(self) -> int:
        return self.components.shape[1]

    @property
    def device(self) -> torch.device:
        return self.components.device

    def __repr__(self) -> str:
        return (
            f"ConceptDictionary(method={self.method!r}, n_concepts={self.n_concepts}, "
            f"n_features={self.n_features}, n_samples={self.activations.shape[0]})"
        )

    def _method(self):
        from xlvlm.concepts.registry import get_method  # filled in by xlvlm.concepts.estimators

        return get_method(self.method)

    def transform(self, X) -> torch.Tensor:
        """Codes of new rows with the components fixed: X (N', D) -> (N', K), float32.

        Computed on the dictionary's device. For the training rows this gives back
        ``activations`` (up to the solver's tolerance for the iterative methods).
        """
        Z = as_features(X, device=self.device)
        if Z.shape[1] != self.n_features:
            raise XlvlmError(
                f"X has {Z.shape[1]} features but the dictionary was learned on {self.n_features}; "
                "use features from the same layer and model"
            )
        with torch.no_grad():
            return self._method().encode(Z, self.components, self.state, self.params)

    def inverse_transform(self, activations) -> torch.Tensor:
        """Reconstruction in feature space: activations (N', K) -> (N', D), float32."""
        U = as_features(activations, device=self.device, name="activations")
        if U.shape[1] != self.n_concepts:
            raise XlvlmError(f"activations have {U.shape[1]} columns; this dictionary has {self.n_concepts} concepts")
        with torch.no_grad():
            return self._method().decode(U, self.components, self.state, self.params)

    def to(self, device) -> "ConceptDictionary":
        """A copy with every tensor on ``device``."""
        return ConceptDictionary(
            self.components.to(device), self.activations.to(device), self.method, dict(self.params),
            {k: v.to(device) for k, v in self.state.items()}, dict(self.info),
        )

    def save(self, path: str | Path) -> Path:
        """Write the folder ``path`` (created if needed); returns it. Atomic per file."""
        folder = Path(path)
        if folder.exists() and not folder.is_dir():
            raise XlvlmError(f"{folder} exists and is not a folder; give a folder path to save the dictionary in")
        tensors = {"components": self.components, "activations": self.activations}
        tensors.update({f"state.{name}": value for name, value in self.state.items()})
        atomic_save_tensors(folder / TENSORS_FILE, tensors)
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "method": self.method,
            "params": self.params,
            "info": self.info,
            "n_concepts": self.n_concepts,
            "n_features": self.n_features,
            "n_samples": int(self.activations.shape[0]),
            "tensors_sha256": sha256_file(folder / TENSORS_FILE),
        }
        atomic_write_json(folder / META_FILE, meta)
        return folder

    @classmethod
    def load(cls, path: str | Path, device=None) -> "ConceptDictionary":
        """Read a folder written by :meth:`save` (or either file in it); tensors on ``device`` (CPU)."""
        folder = Path(path)
        if folder.is_file():
            folder = folder.parent
        meta_path, tensor_path = folder / META_FILE, folder / TENSORS_FILE
        if not meta_path.is_file() or not tensor_path.is_file():
            raise XlvlmError(f"{folder}: no saved concept dictionary ({META_FILE} + {TENSORS_FILE}); check the path")
        meta = read_json(meta_path, "save the dictionary again")
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise XlvlmError(f"{meta_path}: not an xlvlm concept dictionary; check the path")
        _check_meta(meta, meta_path)
        if meta.get("tensors_sha256") != sha256_file(tensor_path):
            raise XlvlmError(f"{tensor_path}: does not match {META_FILE} (interrupted save?); save the dictionary again")
        try:
            tensors = load_file(str(tensor_path), device="cpu")
        except (SafetensorError, OSError) as exc:
            raise XlvlmError(f"{tensor_path}: unreadable ({exc}); save the dictionary again")
        _check_tensors(tensors, meta, tensor_path)
        # Fresh (64-byte aligned) copies: safetensors hands out views at the file's offsets, and
        # BLAS kernels round differently on misaligned data, so a loaded dictionary would
        # transform to codes a few ulps away from the saved one's.
        tensors = {name: t.clone() for name, t in tensors.items()}
        state = {name[len("state."):]: t for name, t in tensors.items() if name.startswith("state.")}
        loaded = cls(tensors["components"], tensors["activations"], meta["method"], meta["params"], state, meta["info"])
        return loaded.to(device) if device is not None else loaded


def read_json(path: Path, remedy: str):
    """The JSON value in the file ``path``; a one-line XlvlmError ending in ``remedy`` (what to
    do) when it is unreadable or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise XlvlmError(f"{path}: not valid JSON ({type(exc).__name__}); {remedy}") from None
    except OSError as exc:
        raise XlvlmError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _check_meta(meta: dict, path: Path) -> None:
    """The fields :meth:`ConceptDictionary.load` relies on, each of the right type."""
    def bad(what: str):
        raise XlvlmError(f"{path}: {what}; save the dictionary again")

    version = meta.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        bad("field 'version' is not an integer")
    if version > VERSION:
        raise XlvlmError(f"{path}: format version {version} is newer than this xlvlm; upgrade xlvlm")
    if not isinstance(meta.get("method"), str):
        bad("field 'method' is not a method name")
    for key in ("params", "info"):
        if not isinstance(meta.get(key), dict):
            bad(f"field {key!r} is not a JSON object")
    for key in ("n_concepts", "n_features", "n_samples"):
        value = meta.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            bad(f"field {key!r} is not a count")
    if not isinstance(meta.get("tensors_sha256"), str):
        bad("field 'tensors_sha256' is missing")


def _check_tensors(tensors: dict, meta: dict, path: Path) -> None:
    """components (K, D) and activations (N, K) as the JSON says, float, finite; state float."""
    def bad(what: str):
        raise XlvlmError(f"{path}: {what}; save the dictionary again")

    k, d, n = meta["n_concepts"], meta["n_features"], meta["n_samples"]
    for name, shape in (("components", (k, d)), ("activations", (n, k))):
        if name not in tensors:
            bad(f"tensor {name!r} is missing")
        tensor = tensors[name]
        if tuple(tensor.shape) != shape or not tensor.is_floating_point():
            bad(f"{name} has shape {tuple(tensor.shape)} ({tensor.dtype}), {META_FILE} says {shape} float")
    for name, tensor in tensors.items():
        if name not in ("components", "activations") and not name.startswith("state."):
            bad(f"unexpected tensor {name[:60]!r}")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad(f"{name} holds NaN or inf")
