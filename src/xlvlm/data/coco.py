"""COCO captions in the Karpathy-split format (``dataset_coco.json``).

The file is ``{"images": [{"filepath": "val2014", "filename": "COCO_val2014_...jpg",
"split": "test", "cocoid": 391895, "sentences": [{"raw": "A man ..."}, ...]}, ...]}``.
An image lives at ``image_root / filepath / filename`` (``image_root / filename`` when the
entry has no ``filepath``, as in the Flickr8k/30k files of the same format).

Each image becomes one sample: ``{"id": str(cocoid), "image", "prompt", "captions": [raw, ...],
"answer": captions[0], "split"}``; ``answer`` (the first reference caption) is what teacher
forcing feeds as the assistant turn. ``cocoid`` falls back to ``imgid`` for the Flickr files.
"""

from __future__ import annotations

from pathlib import Path

from xlvlm.data._common import DEFAULT_CAPTION_PROMPT, field, image_root_dir, load_json
from xlvlm.errors import XlvlmError

KARPATHY_SPLITS = ("train", "restval", "val", "test")


def read_coco_karpathy(
    path: str | Path,
    image_root: str | Path | None = None,
    split: str = "test",
    prompt: str = DEFAULT_CAPTION_PROMPT,
) -> list[dict]:
    """Samples of one Karpathy split.

    ``split`` is ``train``, ``restval``, ``val``, ``test``, several joined by ``+``
    (``train+restval`` is the usual full training set), or ``all``.
    """
    path = Path(path).expanduser()
    wanted = set(KARPATHY_SPLITS) if split == "all" else set(str(split).split("+"))
    unknown = sorted(wanted - set(KARPATHY_SPLITS))
    if unknown:
        raise XlvlmError(f"coco: unknown split {unknown[0]!r}; use one of {', '.join(KARPATHY_SPLITS)}, a '+' join, or 'all'")
    root = image_root_dir(image_root, "COCO")
    data = load_json(path, "Karpathy caption file")
    images = field(data, "images", "the top level", path, list)
    samples, seen = [], set()
    for i, entry in enumerate(images):
        where = f"images[{i}]"
        entry_split = field(entry, "split", where, path, str)
        if entry_split not in wanted:
            continue
        filename = field(entry, "filename", where, path, str)
        if "cocoid" in entry:
            sample_id = str(field(entry, "cocoid", where, path, (int, str)))
        else:
            sample_id = str(field(entry, "imgid", where + " (no 'cocoid')", path, (int, str)))
        if sample_id in seen:
            raise XlvlmError(f"{path}: {where} repeats image id {sample_id!r}; ids must be unique")
        seen.add(sample_id)
        sentences = field(entry, "sentences", where, path, list)
        captions = [field(s, "raw", f"{where}.sentences[{j}]", path, str).strip() for j, s in enumerate(sentences)]
        folder = root / entry["filepath"] if isinstance(entry.get("filepath"), str) else root
        samples.append({
            "id": sample_id,
            "image": str(folder / filename),
            "prompt": prompt,
            "captions": captions,
            **({"answer": captions[0]} if captions else {}),
            "split": entry_split,
        })
    if not samples:
        raise XlvlmError(f"{path}: no image in split {split!r}; pick another split")
    return samples
