"""What ``xlvlm serve`` reads from a run folder, as plain JSON-ready data for the page.

The same files the static report reads, through the same reader (:mod:`xlvlm.runs`: stage
results found by ``stage_results`` and read by ``load_result``, and the rule for which files may
be read at all, ``inside``: a regular file, not a link, that really lies under RUN_DIR). The
page gets data, never markup: it builds the DOM with ``textContent``, so captions, prompts and
sample ids from the run cannot become HTML.

Sample images (a concept's most activating samples) are named by path in the run's records and
often lie outside RUN_DIR (easy-VQA's images live in its package). The playground's rule decides
which may be shown (:meth:`xlvlm.serve.play.Playground.image_path`: inside RUN_DIR or an image
root the user gave with ``--image-root``; the run's files cannot widen it). They are shown as PNG
thumbnails decoded and re-encoded here, reached by (stage folder, concept, rank), never by a path
from the URL.
"""

from __future__ import annotations

import io
import json
import math
import os
from functools import cached_property
from pathlib import Path, PurePosixPath

from xlvlm.errors import XlvlmError
from xlvlm.io import UNIT_PREFIX
from xlvlm.report.html import PNG_SIGNATURE
from xlvlm.runs import DICTIONARY_META, DICTIONARY_TENSORS, MANIFEST, load_result, stage_results
from xlvlm.runs import inside as inside_run

# What /files/ serves, by suffix: figures and the text files a stage writes beside its result.
SERVED_TYPES = {".png": "image/png", ".txt": "text/plain; charset=utf-8", ".md": "text/plain; charset=utf-8",
                ".json": "application/json", ".jsonl": "text/plain; charset=utf-8"}
THUMBNAIL_SIDE = 160
MAX_PREDICTION_ROWS = 1000
HISTOGRAM_BINS = 20


class RefusedPath(XlvlmError):
    """A path the server does not serve (outside RUN_DIR, a link, not a regular file, not a type it serves)."""


def relative_path(text: str) -> PurePosixPath:
    """``text`` as a relative path with no ``..``, no absolute start, no backslash or NUL."""
    if not text or "\x00" in text or "\\" in text:
        raise RefusedPath(f"{text[:80]!r}: not a path inside the run folder")
    path = PurePosixPath(text)
    if path.is_absolute() or any(part in ("..", "") for part in path.parts):
        raise RefusedPath(f"{text[:80]!r}: not a path inside the run folder")
    return path


def thumbnail_png(image_path, side: int = THUMBNAIL_SIDE) -> bytes:
    """The image at ``image_path`` (read by the package's checking loader) scaled to fit ``side``
    pixels, re-encoded as PNG bytes."""
    from xlvlm.data.images import load_image

    image = load_image(str(image_path))
    image.thumbnail((side, side))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _head(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(len(PNG_SIGNATURE))


def _words(value) -> list[str]:
    return [str(w) for w in value] if isinstance(value, list) else []


def _text(value) -> str | None:
    return None if value is None else str(value)


def _number(value):
    """A finite number as itself; anything else (strings, NaN, nested values) as None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return value
    return None


class RunFolder:
    """A run folder read for the browser: its stages and the files it may serve."""

    def __init__(self, root, image_roots=()):
        self.root = Path(root)
        if not self.root.is_dir():
            raise XlvlmError(f"{self.root}: run folder not found; give the --out folder of a run (e.g. runs/demo)")
        self.resolved = self.root.resolve()
        self.image_roots = [self.resolved] + [Path(r).resolve() for r in image_roots]
        self._checked: dict[tuple, str | None] = {}  # (path, size, mtime) -> why a figure is refused, or None

    def image_path(self, value) -> Path:
        """The real path of an image a run record names, by the playground's rule
        (:func:`xlvlm.serve.play.image_path`)."""
        from xlvlm.serve.play import image_path

        return image_path(value, self.resolved, self.image_roots)

    # ---- files ---------------------------------------------------------------------------------
    def file(self, relative: str) -> Path:
        """The file at ``relative`` under RUN_DIR, refused (:class:`RefusedPath`) when it leaves
        RUN_DIR, is or passes through a link, is not a regular file, or is of a type not served."""
        path = self.root / relative_path(relative)
        walk = self.root
        for part in path.relative_to(self.root).parts:
            walk = walk / part
            if walk.is_symlink():
                raise RefusedPath(f"{relative[:80]!r}: a link; the server serves only files inside the run folder")
        if not inside_run(path, self.root):
            raise RefusedPath(f"{relative[:80]!r}: no such file in the run folder")
        if path.suffix.lower() not in SERVED_TYPES:
            raise RefusedPath(f"{relative[:80]!r}: not a file type the server shows ({', '.join(SERVED_TYPES)})")
        if path.suffix.lower() == ".png" and _head(path) != PNG_SIGNATURE:
            raise RefusedPath(f"{relative[:80]!r}: named .png but not a PNG image")
        return path

    def check_figure(self, path: Path) -> bool:
        """True if the PNG at ``path`` passes :func:`~xlvlm.data.images.checked_figure` (remembered
        per file size and modification time: a page asks for the same figures again and again);
        :class:`RefusedPath` saying why otherwise."""
        from xlvlm.data.images import checked_figure

        try:
            stat = path.stat()
        except OSError:
            return False
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in self._checked:
            try:
                checked_figure(path)
                self._checked[key] = None
            except XlvlmError as exc:
                self._checked[key] = str(exc)
        if self._checked[key] is not None:
            raise RefusedPath(self._checked[key])
        return True

    def relative(self, path: Path) -> str:
        folder = path.relative_to(self.root)
        return str(folder) if str(folder) != "." else "."

    def figures(self, folder: Path, names) -> list[dict]:
        """The figures among ``names`` that may be shown: (url path, caption)."""
        return [{"path": self.relative(folder / name), "caption": caption} for name, caption in names
                if inside_run(folder / name, self.root) and self._shown(folder / name)]

    def _shown(self, path: Path) -> bool:
        try:
            return self.check_figure(path)
        except RefusedPath:
            return False

    # ---- stages --------------------------------------------------------------------------------
    @cached_property
    def results(self) -> list[tuple[str, Path, dict]]:
        """(stage, folder, data) of every finished stage result under RUN_DIR, read once; a file
        that does not read as a JSON object is stage "unreadable" with data ``{"error": one line}``."""
        found = []

        def unreadable(path: Path, exc: XlvlmError) -> None:  # one bad file hides no other stage
            message = str(exc).replace(str(self.root) + os.sep, "").replace(str(self.root), ".")
            found.append(("unreadable", path.parent, {"error": message}))

        for path in stage_results(self.root, on_error=unreadable):
            try:
                data = load_result(path)
            except XlvlmError as exc:
                unreadable(path, exc)
                continue
            found.append((str(data.get("stage")), path.parent, data))
        return found

    def _stage(self, stage: str) -> list[tuple[Path, dict]]:
        """The results of ``stage``; an unreadable result (whose stage is unknown) is its one-line error."""
        unreadable = [data["error"] for name, _, data in self.results if name == "unreadable"]
        if unreadable:
            raise XlvlmError(unreadable[0])
        return [(folder, data) for name, folder, data in self.results if name == stage]

    def _result(self, stage: str, folder: str) -> tuple[Path, dict]:
        for path, data in self._stage(stage):
            if self.relative(path) == folder:
                return path, data
        raise RefusedPath(f"{folder[:80]!r}: no {stage} result in the run folder")

    def overview(self) -> dict:
        return {"name": self.root.name,
                "stages": [{"stage": stage, "folder": self.relative(folder)} for stage, folder, _ in self.results]}

    def concepts(self) -> list[dict]:
        """Every concept dictionary: settings, metrics, per concept its words and top samples
        (question, answer, an image key), and the figures beside it."""
        out = []
        for folder, data in self._stage("concepts"):
            settings = data.get("settings") if isinstance(data.get("settings"), dict) else {}
            metrics = data.get("metrics") if isinstance(data.get("metrics"), dict) else {}
            records = [c for c in data.get("concepts") or [] if isinstance(c, dict)]
            concepts = []
            for k, record in enumerate(records):
                tops = [t for t in record.get("top_samples") or [] if isinstance(t, dict)]
                concepts.append({"concept": k, "words": _words(record.get("words")),
                                 "samples": [{"id": _text(t.get("id")), "question": _text(t.get("question")),
                                              "answer": _text(t.get("answer")), "rank": rank,
                                              "has_image": self._image_shown(t.get("image"))}
                                             for rank, t in enumerate(tops)]})
            out.append({"folder": self.relative(folder),
                        "settings": {k: _text(settings.get(k)) for k in ("layer", "method", "n_concepts", "model")},
                        "metrics": {k: _number(v) for k, v in metrics.items() if _number(v) is not None},
                        "concepts": concepts,
                        "figures": self.figures(folder, (
                            ("concept_grid.png", "Most activating images and grounded words of each concept."),
                            ("patch_heatmaps.png", "Where concepts fire: image-token states projected on the "
                                                   "concept, over the concept's top image.")))})
        return out

    def _image_shown(self, value) -> bool:
        try:
            return self.image_path(value).is_file()
        except XlvlmError:
            return False

    def sample_image(self, folder: str, concept: int, rank: int) -> bytes:
        """The thumbnail of the ``rank``-th top sample of ``concept`` in the dictionary at ``folder``."""
        _, data = self._result("concepts", folder)
        records = [c for c in data.get("concepts") or [] if isinstance(c, dict)]
        tops = [t for t in records[concept].get("top_samples") or [] if isinstance(t, dict)] \
            if 0 <= concept < len(records) else []
        if not 0 <= rank < len(tops) or not isinstance(tops[rank].get("image"), str):
            raise RefusedPath(f"concept {concept}, sample {rank}: no such sample image in {folder[:80]!r}")
        return thumbnail_png(self.image_path(tops[rank]["image"]))

    def histogram(self, folder: str, concept: int, bins: int = HISTOGRAM_BINS) -> dict:
        """Counts of the concept's activations over the dictionary's training samples."""
        import torch

        from xlvlm.concepts import ConceptDictionary

        path, _ = self._result("concepts", folder)
        dictionary = path / "dictionary"
        if not (inside_run(dictionary / DICTIONARY_TENSORS, self.root)
                and inside_run(dictionary / DICTIONARY_META, self.root)):
            raise RefusedPath(f"{folder[:80]!r}: no saved dictionary in the run folder")
        activations = ConceptDictionary.load(dictionary).activations
        if not 0 <= concept < activations.shape[1]:
            raise RefusedPath(f"concept {concept}: the dictionary has {activations.shape[1]}")
        values = activations[:, concept].float()
        low, high = float(values.min()), float(values.max())
        counts = torch.histc(values, bins=bins, min=low, max=high if high > low else low + 1)
        return {"low": low, "high": high, "counts": [int(c) for c in counts.tolist()]}

    def shifts(self) -> list[dict]:
        """Every shift analysis: per concept its words before, shifted and fine-tuned, recovery."""
        out = []
        for folder, data in self._stage("shift"):
            summary = data.get("summary") if isinstance(data.get("summary"), dict) else {}
            rows = []
            for record in [c for c in data.get("concepts") or [] if isinstance(c, dict)]:
                rows.append({"concept": _number(record.get("concept")),
                             "matched": _number(record.get("matched_finetuned")),
                             "cos_original": _number(record.get("cos_original")),
                             "cos_shifted": _number(record.get("cos_shifted")),
                             "words_original": _words(record.get("words_original")),
                             "words_shifted": _words(record.get("words_shifted")),
                             "words_finetuned": _words(record.get("words_finetuned")),
                             "words_shift": _words(record.get("words_shift"))})
            out.append({"folder": self.relative(folder),
                        "summary": {k: _number(v) for k, v in summary.items() if _number(v) is not None},
                        "concepts": rows,
                        "figures": self.figures(folder, (
                            ("shift_grid.png", "Original, shifted and matched fine-tuned concepts side by side."),
                            ("shift_recovery.png", "Recovery: cosine of original and shifted concepts to their "
                                                   "fine-tuned match."),
                            ("shift_coherence.png", "Coherence of each concept's per-sample shifts.")))})
        return out

    def sweeps(self) -> list[dict]:
        """Every steering sweep: one flat row per (method, layer, alpha) with its numbers."""
        out = []
        for folder, data in self._stage("sweep"):
            rows = []
            for record in [r for r in data.get("rows") or [] if isinstance(r, dict)]:
                row = {k: (_number(v) if not isinstance(v, str) else v) for k, v in record.items()
                       if not isinstance(v, (dict, list))}
                per_type = record.get("per_type") if isinstance(record.get("per_type"), dict) else {}
                row.update({f"acc {t}": _number(v) for t, v in per_type.items()})
                rows.append(row)
            columns = list(dict.fromkeys(k for r in rows for k in r))
            out.append({"folder": self.relative(folder), "source": _text(data.get("source")),
                        "target": _text(data.get("target")), "columns": columns, "rows": rows,
                        "figures": self.figures(folder, (("sweep.png", "Success against side effects; labels "
                                                                        "are alphas."),))})
        return out

    def prediction_files(self) -> list[str]:
        """Every .jsonl file under RUN_DIR outside feature stores (their shards are not
        predictions) and unfinished output units; links to folders are not followed."""
        found = []
        for folder, subfolders, names in os.walk(self.root, followlinks=False):
            if MANIFEST in names:  # a feature store
                subfolders[:] = []
                continue
            subfolders[:] = sorted(d for d in subfolders if not d.startswith(UNIT_PREFIX))
            found += [Path(folder) / n for n in sorted(names) if n.endswith(".jsonl")]
        return [self.relative(p) for p in found if inside_run(p, self.root)]

    def predictions(self, relative: str, limit: int = MAX_PREDICTION_ROWS) -> dict:
        """The first ``limit`` records of a predictions file (.jsonl) under RUN_DIR."""
        path = self.file(relative)
        if path.suffix != ".jsonl":
            raise RefusedPath(f"{relative[:80]!r}: not a predictions file (.jsonl)")
        rows, skipped = [], 0
        with path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if len(rows) >= limit:
                    break
                try:
                    record = json.loads(line)
                except (ValueError, RecursionError):
                    skipped += 1
                    continue
                if isinstance(record, dict):
                    rows.append({k: _text(record.get(k)) for k in ("id", "prompt", "answer", "prediction")})
        return {"file": self.relative(path), "rows": rows, "skipped": skipped, "limit": limit}
