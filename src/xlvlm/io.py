"""Atomic writes: a reader never sees a half-written file, an interrupted write loses nothing;
output units: a stage's files replaced together (:class:`OutputUnit`); and the limits on what is
read from others: JSON of a run folder (:func:`read_untrusted_json`) and numbers that must stay
usable in float32 arithmetic (:func:`check_magnitudes`)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file


def _plain_mode() -> int:
    """The permissions a plain ``open(path, "w")`` gives. Temporary files are owner-only, and a
    report or store should stay readable by whoever could read its folder."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _temporary_sibling(path: Path) -> tuple[int, str]:
    """A new temporary file next to ``path``: same file system, so the final rename is atomic."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, _plain_mode())
    return fd, tmp


@contextmanager
def _replacing(path: str | Path):
    """Yield a temporary path next to ``path``; on success it replaces ``path`` (atomic rename),
    on any error or interrupt it is removed and ``path`` is left as it was."""
    path = Path(path)
    fd, tmp = _temporary_sibling(path)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename in (None, tmp):
            exc.filename, exc.filename2 = str(path), None  # name the file the user asked for, not our temporary
        raise


def _atomic(path: str | Path, write) -> None:
    with _replacing(path) as tmp, open(tmp, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    _atomic(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, ensure_ascii=False) + "\n")


def atomic_save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    """Save tensors as safetensors (contiguous, on CPU), atomically."""
    with _replacing(path) as tmp:
        try:
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
        except SafetensorError as exc:  # an I/O failure (disk full, ...) as the OSError it is
            code = re.search(r"os error (\d+)", str(exc))
            if code is None:
                raise
            raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path)) from None
        os.chmod(tmp, _plain_mode())  # save_file recreates the file owner-only
        with open(tmp, "rb") as handle:  # on disk before the rename makes it visible
            os.fsync(handle.fileno())


# ---- output units --------------------------------------------------------------------------------
UNIT_PREFIX = ".xlvlm-unit-"
# Every stage's result: ``{"stage": NAME, "version": RESULT_VERSION, ...}`` in RESULT_FILE, the
# unit's last file; the report picks its renderer by ``stage``, never by a file's name.
RESULT_FILE = "result.json"
RESULT_VERSION = 1


def refuse_existing_output(path: str | Path, *, overwrite: bool, option: str = "--out") -> None:
    """The one rule for every command's output: an output that already exists is refused, in one
    line naming the option that gave it, unless the caller asked to overwrite it (``--overwrite``
    on the command line, ``overwrite=True`` in Python). Call it before any work starts."""
    from xlvlm.errors import XlvlmError

    target = Path(path)
    if overwrite or not (target.exists() or target.is_symlink()):
        return
    if target.is_dir() and not any(target.iterdir()):
        return  # an empty folder holds nothing to lose
    hint = "--overwrite" if option.startswith("--") else "overwrite=True"  # the caller's words, as option is
    raise XlvlmError(f"{option} {target}: already exists; choose another {option} or pass {hint} to replace it")


def stage_result(stage: str, **fields) -> dict:
    """A stage's result object: its name and format version first, then its own fields."""
    return {"stage": stage, "version": RESULT_VERSION, **fields}


class OutputUnit:
    """A stage's outputs (figures, tensors, its JSON result) written as one unit.

    Everything is written into a fresh work folder inside ``folder`` (``unit.work``); the old
    outputs stay as they are meanwhile, so an error or a kill before :meth:`commit` leaves them
    untouched (and a leftover ``.xlvlm-unit-PID-*`` folder, removed by the next run once that
    process is gone). ``commit``
    records the SHA-256 of every file in the result JSON (field ``outputs``), removes the old
    result first (from then on nothing looks complete), then the stage's old files (names or
    glob patterns in ``owned``), moves the new files in, and the result last. So ``folder``
    holds either the old complete unit, the new one, or no result at all; :func:`check_outputs`
    tells a reader (the report) whether the files beside a result are the ones it lists.
    Files in ``folder`` that the stage does not own are left alone.

    Use: ``with OutputUnit(out, RESULT_FILE, ["concept_grid.png", ...]) as unit:`` write
    into ``unit.work``, the result JSON last, then ``unit.commit()``.
    """

    def __init__(self, folder, result: str, owned=()):
        self.folder = Path(folder)
        self.result = result
        self.owned = list(owned)
        self.work: Path | None = None

    def __enter__(self) -> "OutputUnit":
        from xlvlm.errors import XlvlmError, argument

        if self.folder.exists() and not self.folder.is_dir():
            raise XlvlmError(f"{self.folder}: exists and is not a folder; choose another {argument('out')}")
        self.folder.mkdir(parents=True, exist_ok=True)
        for leftover in self.folder.glob(UNIT_PREFIX + "*"):
            if not _alive(leftover.name[len(UNIT_PREFIX):].split("-")[0]):  # a run killed before its commit
                shutil.rmtree(leftover, ignore_errors=True)
        self.work = Path(tempfile.mkdtemp(dir=self.folder, prefix=f"{UNIT_PREFIX}{os.getpid()}-"))
        return self

    def commit(self) -> None:
        from xlvlm.errors import XlvlmError

        result = self.work / self.result
        if not result.is_file():
            raise XlvlmError(f"{self.folder}: the stage wrote no {self.result}; nothing was replaced")
        data = json.loads(result.read_text(encoding="utf-8"))
        data["outputs"] = {p.relative_to(self.work).as_posix(): sha256_file(p)
                           for p in sorted(self.work.rglob("*")) if p.is_file() and p != result}
        atomic_write_json(result, data)
        (self.folder / self.result).unlink(missing_ok=True)
        for pattern in self.owned:
            for old in self.folder.glob(pattern):
                _remove(old)
        for entry in sorted(self.work.iterdir()):
            if entry.name != self.result:
                _remove(self.folder / entry.name)
                os.replace(entry, self.folder / entry.name)
        os.replace(result, self.folder / self.result)

    def __exit__(self, *exc) -> bool:
        shutil.rmtree(self.work, ignore_errors=True)
        return False


def _alive(pid: str) -> bool:
    """Whether the process that made a work folder still runs (its folder is then not a leftover)."""
    if os.name == "nt":  # os.kill would end the process there; keep the folder
        return True
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def check_outputs(result_path) -> bool:
    """Whether a stage's result file (``result.json``) stands for a
    complete output unit of :class:`OutputUnit`. False for a file inside an unfinished unit's
    work folder (a reader skips it); True when every file its ``outputs`` lists is there with
    that SHA-256 (or it lists none: written by hand or by an older xlvlm). Otherwise a one-line
    XlvlmError naming the file that does not belong."""
    from xlvlm.errors import XlvlmError

    path = Path(result_path)
    if any(part.startswith(UNIT_PREFIX) for part in path.parts):
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return True  # unreadable: the reader reports that itself
    outputs = data.get("outputs") if isinstance(data, dict) else None
    if outputs is None:
        return True
    redo = f"rerun the stage that wrote {path.parent}"
    if not isinstance(outputs, dict) or not all(isinstance(v, str) for v in outputs.values()):
        raise XlvlmError(f"{path}: field 'outputs' is not a map of file names to SHA-256; {redo}")
    for name, digest in outputs.items():
        file = path.parent / name
        if not name or Path(name).is_absolute() or ".." in Path(name).parts:
            raise XlvlmError(f"{path}: 'outputs' names {name[:80]!r}, not a file beside it; {redo}")
        if not file.is_file() or file.is_symlink():
            raise XlvlmError(f"{file}: missing, though {path.name} lists it (an interrupted rerun?); {redo}")
        if sha256_file(file) != digest:
            raise XlvlmError(f"{file}: not the file {path.name} was written with (an interrupted or concurrent "
                             f"rerun, or an edit); {redo}")
    return True


def read_tensors(path: str | Path, what: str, remedy: str, header_key: str | None = None) -> tuple[object, dict]:
    """The header metadata and every tensor of a safetensors file (never a pickle).

    what: what the file should be ("learned steering file"); remedy: what to do about a bad one.
    header_key: return the JSON value stored under this header key instead of the whole header.
    A missing or unreadable file (or header value) is a one-line XlvlmError naming it; the caller
    checks the rest.
    """
    from safetensors import safe_open

    from xlvlm.errors import XlvlmError

    path = Path(path)
    if not path.is_file():
        raise XlvlmError(f"{path}: {what} not found; {remedy}")
    try:
        with safe_open(path, framework="pt") as handle:
            header, tensors = dict(handle.metadata() or {}), {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as exc:  # safetensors raises its own error types
        raise XlvlmError(f"{path}: not a readable {what} ({type(exc).__name__}); {remedy}") from None
    if header_key is None:
        return header, tensors
    try:
        return json.loads(header[header_key]), tensors
    except (KeyError, ValueError, RecursionError):
        raise XlvlmError(f"{path}: no readable '{header_key}' header; {remedy}") from None


# ---- untrusted JSON --------------------------------------------------------------------------------
#: Limits on a JSON file read from a run folder (which may come from someone else).
MAX_JSON_BYTES = 64 * 2**20
MAX_JSON_DEPTH = 64
#: Integers longer than this are refused: every number must survive float() and str() (Python
#: refuses int <-> str past 4300 digits, and float() overflows past 308).
MAX_JSON_INT_DIGITS = 100


def read_untrusted_json(path: str | Path, what: str = "results", remedy: str = "rerun the stage that wrote it",
                        max_bytes: int = MAX_JSON_BYTES):
    """The JSON value in ``path``, read with limits: at most ``max_bytes`` bytes, nesting at most
    :data:`MAX_JSON_DEPTH` deep, integers of at most :data:`MAX_JSON_INT_DIGITS` digits and
    floats within float range (1e999 is refused, not read as inf). Anything else (missing,
    not UTF-8, malformed, over a limit) is a one-line XlvlmError naming the file, ``what`` it
    should be and the ``remedy``. NaN and Infinity (which Python's json writes) are kept."""
    from xlvlm.errors import XlvlmError

    path = Path(path)

    def refuse(reason: str) -> XlvlmError:
        return XlvlmError(f"{path}: unreadable {what} ({reason}); {remedy}")

    def parse_int(text: str) -> int:
        if len(text.lstrip("-")) > MAX_JSON_INT_DIGITS:
            raise refuse(f"an integer of {len(text.lstrip('-'))} digits, the limit is {MAX_JSON_INT_DIGITS}")
        return int(text)

    def parse_float(text: str) -> float:
        value = float(text)
        if value in (float("inf"), float("-inf")):
            raise refuse(f"the number {text[:40]} is out of float range")
        return value

    try:
        if path.stat().st_size > max_bytes:
            raise refuse(f"{path.stat().st_size:,} bytes, the limit is {max_bytes:,}")
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise refuse("not UTF-8 text") from None
    except OSError as exc:
        raise refuse(exc.strerror or type(exc).__name__) from None
    depth = nesting_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise refuse(f"nested {depth} deep, the limit is {MAX_JSON_DEPTH}")
    try:
        return json.loads(text, parse_int=parse_int, parse_float=parse_float)
    except json.JSONDecodeError as exc:
        raise refuse(f"malformed JSON: {exc.msg} at line {exc.lineno}") from None
    except (ValueError, RecursionError) as exc:
        raise refuse(type(exc).__name__) from None


def nesting_depth(text: str) -> int:
    """The deepest nesting of [ and { in JSON (or YAML flow) ``text``, brackets inside
    double-quoted strings not counted, found without parsing: a hostile file is refused before
    it reaches a recursive (or, for YAML, quadratic) parser."""
    depth = deepest = 0
    for match in re.finditer(r'"(?:[^"\\]|\\.)*"|[\[{]|[\]}]', text):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest


# ---- numbers that stay usable ------------------------------------------------------------------------
#: The largest norm a state or vector may have (about 1.8e19): past it, the sum of squares that
#: a norm, a cosine or a model's layer norm computes in float32 overflows to inf.
MAX_VECTOR_NORM = float(torch.finfo(torch.float32).max) ** 0.5


def check_magnitudes(tensors: dict[str, torch.Tensor], where: str, remedy: str, noun: str = "vector") -> None:
    """Refuse, in one line naming ``where`` and the layer key, a tensor (any shape; norms over its
    last dimension) that holds NaN or inf, or a row whose norm exceeds :data:`MAX_VECTOR_NORM`:
    finite but absurd values (1e36) would turn into inf or NaN in the first norm computed from
    them. noun: what the tensors are, in the message ("vector", "vectors", "states")."""
    from xlvlm.errors import XlvlmError

    verb = "holds" if noun == "vector" else "hold"
    for key, tensor in tensors.items():
        if not bool(torch.isfinite(tensor).all()):
            raise XlvlmError(f"{where}: the {noun} for layer {key} {verb} NaN or inf; {remedy}")
        if tensor.numel() == 0:
            continue
        largest = float(torch.linalg.vector_norm(tensor.detach().double(), dim=-1).max())
        if largest > MAX_VECTOR_NORM:
            raise XlvlmError(f"{where}: the {noun} for layer {key} reach a norm of {largest:.3g}, past what float32 "
                             f"arithmetic holds ({MAX_VECTOR_NORM:.3g}); {remedy}")
