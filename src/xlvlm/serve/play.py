"""The playground: one model, loaded once, that answers and steers on request.

``Playground(run_dir, vlm)`` (or ``Playground.open(run_dir, model="organism:original")``) reads
what a run folder holds (feature stores, concept dictionaries, steering vector files) and runs
every model call on ONE worker thread, so calls never overlap and never run on the caller's
(e.g. a web request's) thread: ``answer``/``steer``/``compute_vector`` block until their turn
comes and their result is ready; ``submit(name, ...)`` returns a ``concurrent.futures.Future``
instead (``await asyncio.wrap_future(...)`` in an async server). Every result is a plain,
JSON-able dict.

The run folder is untrusted: every path it names, and every name a caller passes, is resolved
(symbolic links followed) and must lie inside RUN_DIR (images may also lie under the
``image_roots`` the user gives, e.g. a dataset folder); ``..`` is refused outright. Files are read
only through the package's own checking loaders (FeatureStore, ConceptDictionary.load,
SteeringVector.load, load_image / load_image_bytes); nothing is unpickled or executed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from xlvlm.data.images import MAX_UPLOAD_BYTES, load_image, load_image_bytes
from xlvlm.errors import XlvlmError
from xlvlm.runs import MANIFEST, RESULT_FILE, read_json, walk_run
from xlvlm.steer.settings import MAX_ALPHA

#: Bounds on what a caller may ask for (a web form can send anything): the one place for the
#: playground's limits; the web routes (:mod:`xlvlm.serve.glue`) check requests with the same.
MAX_NEW_TOKENS = 64
MAX_TOP_K = 50
MAX_PROMPT_CHARS = 500
MAX_NAME_CHARS = 400       # a store, vector or sample name in a request
MAX_SET_SAMPLES = 512      # samples in one set when a vector is computed from samples
SAMPLES_SHOWN = 200        # samples of a store listed at once
#: What the web page asks for, within the bounds above.
PAGE_TOP_K = 5
PAGE_NEW_TOKENS = 8
VECTOR_CACHE_SIZE = 32     # computed vectors kept (least recently used dropped first)
WORKER_NAME = "xlvlm-model"
COMPUTED = "computed:"  # the prefix of computed vectors' names (a run's file names are paths)


# ---- paths -----------------------------------------------------------------------------------
def resolve_under(root, name, allow_absolute: bool = False, what: str = "file") -> Path:
    """The real path of ``name`` (relative to ``root``; absolute only with ``allow_absolute``),
    symbolic links followed, which must lie inside ``root``. A ``..`` component, a NUL byte or a
    path leading out of ``root`` (e.g. through a link) is a one-line XlvlmError. The file need
    not exist (callers check that with their loader)."""
    root = Path(root).resolve()
    if not isinstance(name, (str, os.PathLike)):
        raise XlvlmError(f"{what} name must be a path string, not {type(name).__name__}")
    text = os.fspath(name)
    if not text or "\x00" in text:
        raise XlvlmError(f"{what} name {text!r} is empty or holds a NUL byte; name a {what} inside the run folder")
    given = Path(text)
    if ".." in given.parts:
        raise XlvlmError(f"{text}: '..' is not allowed; name a {what} inside the run folder")
    if given.is_absolute() and not allow_absolute:
        raise XlvlmError(f"{text}: absolute paths are not allowed; name a {what} relative to the run folder")
    resolved = (given if given.is_absolute() else root / given).resolve()
    if not resolved.is_relative_to(root):
        raise XlvlmError(f"{text}: lies outside the run folder {root} (a symbolic link out of it?); "
                         f"only files inside the run folder are read")
    return resolved


def image_path(value, root: Path, image_roots) -> Path:
    """The real path of an image that a run file names (a sample's ``image``, relative to the
    resolved run folder ``root`` or absolute), which must lie inside one of ``image_roots`` (the
    run folder first) once links are followed; a one-line XlvlmError otherwise. The file itself
    is not opened here."""
    if not isinstance(value, str) or not value or "\x00" in value or value.startswith("<PIL.Image"):
        raise XlvlmError("the image was not a file (an in-memory image); upload it instead")
    given = Path(value)
    if ".." in given.parts:
        raise XlvlmError(f"image path {value} holds '..'; refused")
    path = (given if given.is_absolute() else root / given).resolve()
    if not any(path.is_relative_to(allowed) for allowed in image_roots):
        raise XlvlmError(f"image {value} lies outside the run folder and the image roots; add its folder as "
                         f"an image root if you trust it")
    return path


def _check_int(value, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise XlvlmError(f"{name} must be an integer from {low} to {high}, not {value!r}")
    return value


def _check_prompt(prompt) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise XlvlmError("prompt: give a non-empty question or instruction")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise XlvlmError(f"prompt: {len(prompt)} characters, the limit is {MAX_PROMPT_CHARS}; shorten it")
    return prompt


def _check_alpha(alpha) -> float:
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise XlvlmError(f"alpha must be a number, not {alpha!r}") from None
    if not math.isfinite(value) or abs(value) > MAX_ALPHA:
        raise XlvlmError(f"alpha must be a finite number within +-{MAX_ALPHA:g}, not {alpha!r}")
    return value


# ---- the playground ---------------------------------------------------------------------------
class Playground:
    """One model over one run folder; see the module docstring.

    run_dir: the run folder (read only). vlm: a VLM of :func:`xlvlm.load_vlm`. image_roots:
    folders (besides RUN_DIR) that the run's sample images may lie in (the user's own choice,
    e.g. a dataset folder; the run's files cannot widen it). max_upload_bytes / max_image_pixels:
    limits on uploaded images (:func:`xlvlm.data.images.load_image_bytes`). model_name: the model
    as the user named it (e.g. ``organism:original``; default the VLM's own name, often a folder).
    """

    #: The calls that run on the worker thread (``submit`` accepts these names).
    JOBS = ("answer", "steer", "compute_vector")

    def __init__(self, run_dir, vlm, image_roots=(), max_upload_bytes: int = MAX_UPLOAD_BYTES,
                 max_image_pixels: int | None = None, model_name: str | None = None):
        from xlvlm.hooks import require_vlm

        require_vlm(vlm, "Playground")
        root = Path(run_dir)
        if not root.is_dir():
            raise XlvlmError(f"{run_dir}: not a folder; give a run folder (e.g. what `xlvlm demo --out DIR` wrote)")
        self.root = root.resolve()
        self.vlm = vlm
        self.model_name = str(model_name) if model_name else str(vlm.name)
        self.image_roots = [self.root] + [Path(r).resolve() for r in image_roots]
        self.max_upload_bytes = int(max_upload_bytes)
        self.max_image_pixels = max_image_pixels
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=WORKER_NAME)
        self._lock = threading.Lock()  # guards the catalogue, the caches and the pending count
        self._pending = 0
        self._catalogue: dict | None = None
        self._stores: dict[str, object] = {}
        self._samples: dict[str, dict[str, dict]] = {}
        self._dictionaries: dict[str, dict] = {}
        self._files: dict[str, object] = {}  # vector files: the loaded vector, or the error it gave
        self._vectors: OrderedDict[str, object] = OrderedDict()  # computed vectors, by key

    @classmethod
    def open(cls, run_dir, model: str | None = None, device: str = "cpu", dtype=None,
             trust_remote_code: bool = False, **options) -> "Playground":
        """Load ``model`` (a hub id, a folder or an ``organism:`` name; by default the model the
        run's feature stores name) once, and open the playground on ``run_dir``."""
        from xlvlm.models import load_vlm

        if model is None:
            model = _run_model(Path(run_dir))
        return cls(run_dir, load_vlm(model, device=device, dtype=dtype, trust_remote_code=trust_remote_code),
                   **{"model_name": model, **options})

    # ---- the worker -----------------------------------------------------------------------
    def submit(self, name: str, /, *args, **kwargs) -> Future:
        """Queue the model call ``name`` (one of JOBS) with its arguments; a Future of its dict."""
        if name not in self.JOBS:
            raise XlvlmError(f"unknown playground call {name!r}: use one of {', '.join(self.JOBS)}")
        job = getattr(self, f"_{name}")

        def run():
            try:
                return job(*args, **kwargs)
            finally:
                with self._lock:
                    self._pending -= 1

        with self._lock:
            self._pending += 1
        try:
            return self._executor.submit(run)
        except RuntimeError:  # the executor is shut down
            with self._lock:
                self._pending -= 1
            raise XlvlmError("the playground is closed; open a new one") from None

    @property
    def pending(self) -> int:
        """Model calls queued or running (a web page shows "busy" while this is above 0)."""
        with self._lock:
            return self._pending

    def answer(self, image, prompt: str | None = None, top_k: int = 5, max_new_tokens: int = 8,
               dictionary: str | None = None, n_concepts: int = 5) -> dict:
        """The model's answer to ``image`` + ``prompt``, its next-token probabilities and the
        concepts the input activates. Runs on the worker; see :meth:`_answer` for the dict."""
        return self.submit("answer", image, prompt, top_k, max_new_tokens, dictionary, n_concepts).result()

    def steer(self, image, prompt: str | None = None, vector: str = "", alpha: float = 1.0, layer=None,
              positions="all", top_k: int = 5, max_new_tokens: int = 8) -> dict:
        """The answer steered by ``vector`` next to the unsteered one. See :meth:`_steer`."""
        return self.submit("steer", image, prompt, vector, alpha, layer, positions, top_k, max_new_tokens).result()

    def compute_vector(self, source, target, method: str = "mean-diff", layers=None) -> dict:
        """A steering vector from two sample sets, cached by what it was made from. See
        :meth:`_compute_vector`."""
        return self.submit("compute_vector", source, target, method, layers).result()

    def close(self) -> None:
        """Finish the queued calls and stop the worker thread."""
        self._executor.shutdown(wait=True)

    def __enter__(self) -> "Playground":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- what the run holds (no model calls: safe on any thread) ----------------------------
    def info(self) -> dict:
        """The model and the choices a form offers: ``model``, ``family``, ``num_layers``,
        ``hidden_size``, ``layers`` (keys a vector may be applied at), ``positions``, ``methods``,
        ``limits``."""
        from xlvlm.steer.registry import METHODS, POSITION_RULES

        vlm = self.vlm
        return {"model": self.model_name, "family": vlm.family, "num_layers": vlm.num_layers,
                "hidden_size": vlm.hidden_size, "layers": [str(i) for i in range(vlm.num_layers)] + ["final"],
                "positions": list(POSITION_RULES), "methods": list(METHODS),
                "limits": {"max_new_tokens": MAX_NEW_TOKENS, "top_k": MAX_TOP_K, "prompt_chars": MAX_PROMPT_CHARS,
                           "alpha": MAX_ALPHA, "upload_bytes": self.max_upload_bytes,
                           "image_pixels": self._pixel_limit(), "set_samples": MAX_SET_SAMPLES}}

    def _pixel_limit(self) -> int:
        from xlvlm.data import images

        return images.MAX_IMAGE_PIXELS if self.max_image_pixels is None else int(self.max_image_pixels)

    def _scan(self) -> dict:
        """Stores, dictionaries and candidate vector files under RUN_DIR (links to folders are
        not followed; a store's or a dictionary's folder is not searched further)."""
        with self._lock:
            if self._catalogue is not None:
                return self._catalogue
        stores, dictionaries, files = walk_run(self.root)
        catalogue = {"stores": [self._name(p) for p in stores], "dictionaries": [self._name(p) for p in dictionaries],
                     "vector_files": [self._name(p) for p in files]}
        with self._lock:
            self._catalogue = catalogue
        return catalogue

    def _name(self, path: Path) -> str:
        """A run path as callers name it: relative to RUN_DIR, with forward slashes."""
        return path.relative_to(self.root).as_posix() if path != self.root else "."

    def _check_contained(self, folder: Path) -> None:
        """Refuse a store or dictionary folder holding a link to a file outside RUN_DIR (its
        loader would read through it)."""
        for entry in folder.iterdir():
            if not entry.resolve().is_relative_to(self.root):
                raise XlvlmError(f"{self._name(folder)}: {entry.name} links outside the run folder; refused")

    def _store(self, name: str):
        """The feature store ``name`` (a folder relative to RUN_DIR), opened once."""
        from xlvlm.features.store import FeatureStore

        return self._open_listed(name, "stores", "store", "feature store", self._stores,
                                 lambda path, key: FeatureStore(path))

    def _open_listed(self, name: str, kind: str, what: str, long_what: str, cache: dict, load):
        """``load(path, key)`` of the run's folder ``name``, once: only a folder the run's scan
        lists under ``kind`` and with no link out of RUN_DIR."""
        path = resolve_under(self.root, name, what=what)
        key = self._name(path)

        def make():
            if key not in self._scan()[kind]:
                raise XlvlmError(f"{name}: not a {long_what} of this run; pick one of the run's {kind}")
            self._check_contained(path)
            return load(path, key)

        return self._cached(cache, key, make)

    def _cached(self, cache: dict, key: str, make):
        """``cache[key]``, made by ``make()`` (outside the lock: it reads files) on first use."""
        with self._lock:
            if key in cache:
                return cache[key]
        value = make()
        with self._lock:
            return cache.setdefault(key, value)

    def stores(self) -> list[dict]:
        """The run's feature stores: ``name``, ``model``, ``selector``, ``layers``, ``n_samples``,
        or ``error`` (one line) for a folder that does not open as a store."""
        out = []
        for name in self._scan()["stores"]:
            try:
                store = self._store(name)
                out.append({"name": name, "model": str(store.model), "selector": store.selector,
                            "layers": store.layers, "n_samples": len(store)})
            except XlvlmError as exc:
                out.append({"name": name, "error": str(exc)})
        return out

    def _sample_index(self, store_name: str) -> dict[str, dict]:
        store = self._store(store_name)
        return self._cached(self._samples, self._name(Path(store.path).resolve()),
                            lambda: {str(s.get("id")): s for s in store.samples})

    def _sample(self, store_name: str, sample_id: str) -> dict:
        if not isinstance(sample_id, str) or not sample_id:
            raise XlvlmError(f"sample id must be a non-empty string, not {sample_id!r}")
        sample = self._sample_index(store_name).get(sample_id)
        if sample is None:
            raise XlvlmError(f"{store_name}: has no sample {sample_id!r}; pick one of its samples")
        return sample

    def samples(self, store: str, answer: str | None = None, offset: int = 0, limit: int = 100) -> list[dict]:
        """Samples of the store ``store`` (optionally only those whose reference ``answer`` is
        given): ``store``, ``id``, ``prompt``, ``answer``, ``reference`` (the sample's whole
        reference answer: its ``reference`` field where the store was extracted with a forced
        ``answer`` such as a caption's first word, else its answer), ``answer_type``,
        ``prediction``, ``image_ok`` (its image file exists inside RUN_DIR or an image root)."""
        _check_int(offset, "offset", 0, 10**9)
        _check_int(limit, "limit", 1, 10_000)
        rows = [s for s in self._sample_index(store).values() if answer is None or s.get("answer") == answer]
        return [{"store": self._name(resolve_under(self.root, store)), "id": str(s.get("id")),
                 "prompt": s.get("prompt"), "answer": s.get("answer"),
                 "reference": s.get("reference") if isinstance(s.get("reference"), str) else s.get("answer"),
                 "answer_type": s.get("answer_type"),
                 "prediction": s.get("prediction"), "image_ok": self._image_ok(s)}
                for s in rows[offset:offset + limit]]

    def sample_image(self, store: str, sample_id: str):
        """The PIL image (RGB) of a run sample; one-line error when it may not or cannot be read."""
        return load_image(self.sample_image_path(store, sample_id))

    def sample_image_path(self, store: str, sample_id: str) -> Path:
        """The real path of a run sample's image (see :meth:`image_path`)."""
        sample = self._sample(store, sample_id)
        try:
            return self.image_path(sample.get("image"))
        except XlvlmError as exc:
            raise XlvlmError(f"sample {sample_id!r}: {exc}") from None

    def image_path(self, value) -> Path:
        """The real path of an image that a run file names (see :func:`image_path`)."""
        return image_path(value, self.root, self.image_roots)

    def _image_ok(self, sample: dict) -> bool:
        try:
            return self.image_path(sample.get("image")).is_file()
        except XlvlmError:
            return False

    # ---- dictionaries ---------------------------------------------------------------------
    def dictionaries(self) -> list[dict]:
        """The run's concept dictionaries: ``name``, ``layer``, ``selector``, ``store``,
        ``method``, ``n_concepts``, ``usable`` (activations can be read for new inputs), or
        ``error`` (one line)."""
        out = []
        for name in self._scan()["dictionaries"]:
            try:
                entry = self._dictionary(name)
                out.append({k: entry[k] for k in ("name", "layer", "selector", "store", "method", "n_concepts")}
                           | {"usable": entry["problem"] is None, "problem": entry["problem"]})
            except XlvlmError as exc:
                out.append({"name": name, "error": str(exc)})
        return out

    def _dictionary(self, name: str) -> dict:
        """A dictionary with what reading it needs: the layer and the token selector of the store
        it was learnt from (from the concepts stage's result.json beside it) and its words."""
        return self._open_listed(name, "dictionaries", "dictionary", "concept dictionary", self._dictionaries,
                                 self._load_dictionary)

    def _load_dictionary(self, path: Path, key: str) -> dict:
        """The entry :meth:`_dictionary` describes, read from the dictionary folder ``path``."""
        from xlvlm.concepts.dictionary import ConceptDictionary
        from xlvlm.hooks import resolve_layer
        from xlvlm.layerkeys import layer_key

        dictionary = ConceptDictionary.load(path)
        entry = {"name": key, "dictionary": dictionary, "method": dictionary.method,
                 "n_concepts": dictionary.n_concepts, "layer": None, "selector": None, "store": None,
                 "generation": None, "words": [[] for _ in range(dictionary.n_concepts)], "problem": None}
        result = read_json(path.parent / RESULT_FILE, self.root)
        settings = result.get("settings") if isinstance(result, dict) and result.get("stage") == "concepts" else None
        if not isinstance(settings, dict) or settings.get("layer") is None:
            entry["problem"] = "no concepts result.json beside it names its layer and store"
        else:
            concepts = result.get("concepts")
            for i, concept in enumerate(concepts if isinstance(concepts, list) else []):
                words = concept.get("words") if isinstance(concept, dict) else None
                if i < dictionary.n_concepts and isinstance(words, list):
                    entry["words"][i] = [str(w) for w in words[:20]]
            try:
                entry["layer"] = resolve_layer(self.vlm, layer_key(settings["layer"])).key
                store = self._store(self._name(resolve_under(self.root, str(settings.get("store") or ""),
                                                             allow_absolute=True, what="store")))
                entry.update(store=self._name(Path(store.path).resolve()), selector=store.selector,
                             generation=store.settings.generation)
            except XlvlmError as exc:
                entry["problem"] = f"its layer or store cannot be used ({exc})"
            if entry["problem"] is None and dictionary.n_features != self.vlm.hidden_size:
                entry["problem"] = (f"learnt on {dictionary.n_features} features, the model has "
                                    f"{self.vlm.hidden_size}; serve it with the run's model")
        return entry

    # ---- vectors ----------------------------------------------------------------------------
    def vectors(self) -> list[dict]:
        """Steering vectors: the run's vector files and the ones computed so far. Each: ``name``
        (what ``steer`` takes), ``kind`` ("file" or "computed"), ``layers``, ``norms``,
        ``method``, ``fits`` (its size is the model's hidden size)."""
        out = []
        for name in self._scan()["vector_files"]:
            vector = self._vector_file(name, quiet=True)
            if vector is not None:
                out.append(self._describe(name, "file", vector))
        with self._lock:
            computed = list(self._vectors.items())
        out.extend(self._describe(name, "computed", vector) for name, vector in computed)
        return out

    def _describe(self, name: str, kind: str, vector) -> dict:
        """Also: ``steering`` (its kind: "fixed", "learned" or "per-sample"), ``alpha`` (the alpha
        it was calibrated at, or None), ``ids`` (per-sample: the samples it holds vectors for)."""
        steering = _steering_kind(vector)
        if steering == "fixed":
            sizes = {int(v.numel()) for v in vector.layer_activations.values()}
            norms = {k: round(n, 6) for k, n in vector.norms().items()}
        else:
            sizes = {int(vector.hidden_size)}
            norms = {k: round(float(n.mean()), 6) for k, n in vector.norms().items()} if steering == "per-sample" else {}
        calibrated = vector.metadata.get("calibration")
        alpha = calibrated.get("alpha") if isinstance(calibrated, dict) else None
        return {"name": name, "kind": kind, "steering": steering, "layers": vector.layers, "norms": norms,
                "method": vector.metadata.get("method"), "fits": sizes == {self.vlm.hidden_size},
                "alpha": alpha if isinstance(alpha, (int, float)) and not isinstance(alpha, bool)
                and math.isfinite(alpha) else None,
                "ids": list(vector.ids) if steering == "per-sample" else None}

    def _vector_file(self, name: str, quiet: bool = False):
        """A vector file of the run (loaded once), or None (quiet) for a .safetensors file that is
        not one."""
        path = resolve_under(self.root, name, what="vector")
        key = self._name(path)
        if key not in self._scan()["vector_files"]:
            if quiet:
                return None
            raise XlvlmError(f"{name}: not a steering vector file of this run; pick one of the run's vectors")
        loaded = self._cached(self._files, key, lambda: _load_vector(path, name))
        if isinstance(loaded, XlvlmError):
            if quiet:
                return None
            raise XlvlmError(str(loaded)) from None  # a fresh error: the kept one gathers no tracebacks
        return loaded

    def _vector(self, name: str):
        if not isinstance(name, str) or not name:
            raise XlvlmError("vector: name one of the run's vectors or a computed one")
        with self._lock:
            if name in self._vectors:
                self._vectors.move_to_end(name)
                return self._vectors[name]
        if name.startswith(COMPUTED):
            raise XlvlmError(f"vector {name} is no longer kept (the newest {VECTOR_CACHE_SIZE} are); compute it again")
        return self._vector_file(name)

    def _sample_set(self, spec, where: str):
        """A set of samples as a store (rows used as they are) or a list of samples (extracted on
        the spot). spec: a store name; ``{"store", "answer"}``, the store's rows whose sample has
        that reference answer (e.g. "yes" vs "no"); or a list of ``{"store", "id"}``."""
        if isinstance(spec, str):
            return self._store(spec)
        if isinstance(spec, dict) and isinstance(spec.get("store"), str) and "answer" in spec:
            return self._answer_subset(spec["store"], spec["answer"], where)
        if not isinstance(spec, (list, tuple)) or not spec:
            raise XlvlmError(f"{where}: give a store name, {{store, answer}} or a non-empty list of {{store, id}}")
        if len(spec) > MAX_SET_SAMPLES:
            raise XlvlmError(f"{where}: {len(spec)} samples, the limit is {MAX_SET_SAMPLES}")
        samples = []
        for i, ref in enumerate(spec):
            if not isinstance(ref, dict) or not isinstance(ref.get("store"), str) or "id" not in ref:
                raise XlvlmError(f"{where}[{i}]: give {{\"store\": ..., \"id\": ...}}")
            sample = self._sample(ref["store"], ref["id"])
            samples.append({"id": f"{i}", "image": self.sample_image(ref["store"], ref["id"]),
                            "prompt": sample.get("prompt")})
        return samples

    def _answer_subset(self, store_name: str, answer, where: str):
        """The rows of a one-row-per-sample store whose sample's reference answer is ``answer``,
        as an in-memory store."""
        from xlvlm.features.store import sample_subset

        store = self._store(store_name)
        if store.settings.rows_per_sample != 1:
            raise XlvlmError(f"{where}: {store_name} has several rows per sample; pick samples instead")
        chosen = [i for i, (s, ok) in enumerate(zip(store.samples, store.present.tolist()))
                  if ok and s.get("answer") == answer]
        if not chosen:
            raise XlvlmError(f"{where}: {store_name} has no present sample answered {answer!r}")
        return sample_subset(store, chosen)

    def _compute_vector(self, source, target, method: str = "mean-diff", layers=None) -> dict:
        """The vector from the ``source`` set towards the ``target`` set, by ``method`` (one of
        :data:`xlvlm.steer.METHODS`), at ``layers`` (default: every layer the stores hold, or every
        decoder layer for sample lists).
        Sets: see :meth:`_sample_set`. Returns the vector's description (:meth:`vectors`), its
        ``name`` the cache key."""
        from xlvlm.steer import METHODS, SteeringVector

        if method not in METHODS:
            raise XlvlmError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")
        key = COMPUTED + hashlib.sha256(json.dumps([source, target, method, layers], sort_keys=True,
                                                      default=str).encode()).hexdigest()[:16]
        with self._lock:
            if key in self._vectors:
                self._vectors.move_to_end(key)
                return self._describe(key, "computed", self._vectors[key])
        s, t = self._sample_set(source, "source"), self._sample_set(target, "target")
        if isinstance(s, list) != isinstance(t, list):
            raise XlvlmError("source and target: give two store names or two lists of samples")
        if isinstance(s, list):
            vector = SteeringVector.train(self.vlm, positive=t, negative=s,
                                          layers=layers or list(range(self.vlm.num_layers)), method=method)
        else:
            vector = SteeringVector.compute(s, t, layers or [k for k in s.layers if k in t.layers], method=method)
        vector.metadata.update(source=_describe_set(source), target=_describe_set(target))
        with self._lock:
            self._vectors[key] = vector
            while len(self._vectors) > VECTOR_CACHE_SIZE:
                self._vectors.popitem(last=False)
        return self._describe(key, "computed", vector)

    # ---- model calls (on the worker) --------------------------------------------------------
    def _input(self, image, prompt) -> tuple[object, str, dict]:
        """(PIL image, prompt, a description of the image) from a caller's image and prompt.

        image: an uploaded file's bytes, a ``{"store", "id"}`` run sample (whose prompt is the
        default), or a PIL image (Python callers)."""
        from PIL import Image

        if isinstance(image, (bytes, bytearray, memoryview)):
            picture = load_image_bytes(image, "upload", self.max_upload_bytes, self.max_image_pixels)
            about = {"kind": "upload"}
        elif isinstance(image, dict) and isinstance(image.get("store"), str) and "id" in image:
            sample = self._sample(image["store"], image["id"])
            picture = self.sample_image(image["store"], image["id"])
            about = {"kind": "sample", "store": self._name(resolve_under(self.root, image["store"])),
                     "id": str(image["id"]), "answer": sample.get("answer")}
            prompt = sample.get("prompt") if prompt is None else prompt
        elif isinstance(image, Image.Image):
            picture = load_image(image)
            about = {"kind": "image"}
        else:
            raise XlvlmError("image: give an uploaded file's bytes or a run sample {\"store\": ..., \"id\": ...}")
        about.update(width=picture.width, height=picture.height)
        return picture, _check_prompt(prompt), about

    def _generate(self, sample: dict, top_k: int, max_new_tokens: int, steering=None, **how) -> dict:
        """The answer and top-k of one sample, steered by ``steering`` (``how``: alpha, positions) when given."""
        from xlvlm.steer.run import predict

        record = predict(self.vlm, [sample], steering, **how, max_new_tokens=max_new_tokens, top_k=top_k,
                         progress=False)[0]
        return {"answer": record["prediction"], "top_k": record["top_k"]}

    def _answer(self, image, prompt=None, top_k: int = 5, max_new_tokens: int = 8, dictionary: str | None = None,
                n_concepts: int = 5) -> dict:
        """Returns ``{"prompt", "image", "answer", "top_k", "concepts"}``: ``top_k`` holds per
        generated step the ``top_k`` most probable next tokens ``{"token", "id", "prob"}``, best
        first; ``concepts`` is :meth:`_concepts`' dict (None when the run has no usable
        dictionary and none is named)."""
        _check_int(top_k, "top_k", 1, MAX_TOP_K)
        _check_int(max_new_tokens, "max_new_tokens", 1, MAX_NEW_TOKENS)
        _check_int(n_concepts, "n_concepts", 1, 1000)
        picture, prompt, about = self._input(image, prompt)
        sample = {"id": "playground", "image": picture, "prompt": prompt}
        out = {"prompt": prompt, "image": about, **self._generate(sample, top_k, max_new_tokens)}
        if dictionary is None:
            usable = [d["name"] for d in self.dictionaries() if d.get("usable")]
            dictionary = usable[0] if usable else None
        out["concepts"] = None if dictionary is None else self._concepts(sample, out["answer"], dictionary, n_concepts)
        return out

    def _concepts(self, sample: dict, answer: str, name: str, n: int) -> dict:
        """The concepts of dictionary ``name`` that ``sample`` activates: its state at the
        dictionary's layer, at the token(s) its store's selector picks (extracted the same way as
        the store: teacher forced, with the model's ``answer`` as the response where the selector
        needs one, or generated), encoded with ``dictionary.transform`` (the mean over the rows of
        a many-token selector). Returns ``{"dictionary", "layer", "selector", "present",
        "activations" (K floats), "top": [{"concept", "activation", "max_in_run", "words"}]}``,
        the ``n`` most active first; ``present`` False (and no activations) where the selector
        finds no token."""
        from xlvlm.features.run import extract_batch_generated, extract_batch_teacher_forced
        from xlvlm.features.selectors import parse_selector

        entry = self._dictionary(name)
        if entry["problem"] is not None:
            raise XlvlmError(f"{entry['name']}: cannot read concepts for new inputs: {entry['problem']}")
        out = {"dictionary": entry["name"], "layer": entry["layer"], "selector": entry["selector"],
               "present": False, "activations": [], "top": []}
        generation, selector = entry["generation"], parse_selector(entry["selector"])
        if selector.needs_response and not generation:
            if not answer:
                return out
            sample = dict(sample, answer=answer)
        # One input's states, recorded (hooks.record) and selected as its store's were; no store is written.
        if generation:
            batch = extract_batch_generated(self.vlm, [sample], [entry["layer"]], selector,
                                            int(generation.get("max_new_tokens", 20)))
        else:
            batch = extract_batch_teacher_forced(self.vlm, [sample], [entry["layer"]], selector)
        rows = next(iter(batch.rows.values()))
        if not batch.present[0] or rows.shape[0] == 0:
            return out
        dictionary = entry["dictionary"]
        codes = dictionary.transform(rows.float()).mean(dim=0)
        peaks = dictionary.activations.max(dim=0).values if dictionary.activations.shape[0] else None
        order = codes.argsort(descending=True)[:n].tolist()
        out.update(present=True, activations=[float(v) for v in codes],
                   top=[{"concept": i, "activation": float(codes[i]),
                         "max_in_run": None if peaks is None else float(peaks[i]), "words": entry["words"][i]}
                        for i in order])
        return out

    def _steer(self, image, prompt=None, vector: str = "", alpha: float = 1.0, layer=None, positions="all",
               top_k: int = 5, max_new_tokens: int = 8) -> dict:
        """Returns ``{"prompt", "image", "vector", "alpha", "layers", "positions", "steered",
        "unsteered", "changed"}``: ``steered``/``unsteered`` each ``{"answer", "top_k"}`` (as in
        :meth:`_answer`); the vector is applied at ``layer`` only, or at all its layers when None."""
        from xlvlm.layerkeys import find_layer
        from xlvlm.steer import SteeringVector

        _check_int(top_k, "top_k", 1, MAX_TOP_K)
        _check_int(max_new_tokens, "max_new_tokens", 1, MAX_NEW_TOKENS)
        alpha = _check_alpha(alpha)
        chosen = self._vector(vector)
        if layer is not None:
            key = find_layer(layer, chosen.layers, self.vlm.num_layers)
            if key is None:
                raise XlvlmError(f"vector {vector} has no layer {layer!r}: it holds {', '.join(chosen.layers)}")
            if _steering_kind(chosen) == "fixed":
                chosen = SteeringVector({key: chosen.layer_activations[key]}, chosen.metadata)
            elif _steering_kind(chosen) == "per-sample":
                chosen = type(chosen)({key: chosen.vectors[key]}, chosen.ids, chosen.metadata)
        picture, prompt, about = self._input(image, prompt)
        sample = {"id": self._steered_id(chosen, vector, image), "image": picture, "prompt": prompt}
        unsteered = self._generate(sample, top_k, max_new_tokens)
        steered = self._generate(sample, top_k, max_new_tokens, chosen, alpha=alpha, positions=positions)
        return {"prompt": prompt, "image": about, "vector": vector, "alpha": alpha, "layers": chosen.layers,
                "positions": positions, "steered": steered, "unsteered": unsteered,
                "changed": steered["answer"] != unsteered["answer"]}

    @staticmethod
    def _steered_id(chosen, name: str, image) -> str:
        """The sample id the steering reads: a per-sample file steers only the samples it holds."""
        if _steering_kind(chosen) != "per-sample":
            return "playground"
        sample_id = str(image.get("id")) if isinstance(image, dict) and "store" in image else None
        if sample_id is None or sample_id not in chosen.ids:
            raise XlvlmError(f"{name}: per-sample steering holds vectors for its own {len(chosen.ids)} samples only "
                             f"(e.g. {', '.join(chosen.ids[:3])}); pick one of them, or a fixed or learned steering")
        return sample_id


def _steering_kind(steering) -> str:
    """"fixed", "learned" or "per-sample": how a steering file of the run steers."""
    from xlvlm.steer.learned import LearnedSteering
    from xlvlm.steer.per_sample import PerSampleSteering

    if isinstance(steering, LearnedSteering):
        return "learned"
    return "per-sample" if isinstance(steering, PerSampleSteering) else "fixed"


def _load_vector(path: Path, name: str):
    """The steering in ``path`` (a fixed SteeringVector, a PerSampleSteering or a
    LearnedSteering, told apart by the file's header), or the XlvlmError saying why it is none
    (kept, so a listing does not reread a file that is not one)."""
    from safetensors import safe_open

    from xlvlm.steer import SteeringVector
    from xlvlm.steer import learned, per_sample

    try:
        with safe_open(path, framework="pt") as handle:  # the header only: other files cost nothing
            header, keys = handle.metadata() or {}, list(handle.keys())
        if learned.META_KEY in header:
            return learned.LearnedSteering.load(path)
        if not any(k.startswith("layer/") for k in keys):
            return XlvlmError(f"{name}: not a steering file (no layer/<key> tensors, not learned steering)")
        if per_sample.META_KEY in header:
            return per_sample.PerSampleSteering.load(path)
        return SteeringVector.load(path)
    except XlvlmError as exc:
        return exc
    except Exception as exc:  # safetensors raises its own error types on a corrupt header
        return XlvlmError(f"{name}: not a readable safetensors file ({type(exc).__name__})")


def _describe_set(spec) -> str:
    """A sample set's spec in words, for the vector's metadata."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, dict):
        return f"{spec.get('store')} answered {spec.get('answer')!r}"
    return f"{len(spec)} samples"


def _run_model(root: Path) -> str:
    """The model the run's feature stores were extracted with (the most common one)."""
    from collections import Counter

    names = Counter()
    for folder in walk_run(root)[0]:
        data = read_json(folder / MANIFEST, root.resolve())
        if isinstance(data, dict) and isinstance(data.get("model"), str) and data["model"]:
            names[data["model"]] += 1
    if not names:
        raise XlvlmError(f"{root}: no feature store names its model; pass --model")
    return names.most_common(1)[0][0]
