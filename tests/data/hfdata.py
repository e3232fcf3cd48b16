"""Small Hugging Face datasets in the schemas the presets read (images stored as PNG bytes), and
the same samples as JSONL with the images written out."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

datasets = pytest.importorskip("datasets")

COLORS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200), (120, 60, 200)]


def png(i: int, size=None) -> bytes:
    """A small PNG, different for each ``i`` (size and colour)."""
    image = Image.new("RGB", size or (24 + 3 * i, 20 + 2 * i), COLORS[i % len(COLORS)])
    image.paste((255, 255, 255), (2, 2, 8 + i % 5, 8))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def pope_rows(n: int = 6) -> dict:
    """lmms-lab/POPE's columns."""
    objects = ["dog", "cat", "car", "bus", "cup", "kite"]
    return {
        "id": [str(i) for i in range(n)],
        "question_id": [str(i // 3 + 1) for i in range(n)],
        "question": [f"Is there a {objects[i % 6]} in the image?" for i in range(n)],
        "answer": ["yes" if i % 2 == 0 else "no" for i in range(n)],
        "image_source": [f"COCO_val2014_{i:012d}" for i in range(n)],
        "image": [{"bytes": png(i), "path": None} for i in range(n)],
        "category": [("random", "popular", "adversarial")[i % 3] for i in range(n)],
    }


def vqav2_rows(n: int = 4) -> dict:
    """lmms-lab/VQAv2's columns."""
    return {
        "question_type": ["what color"] * n,
        "multiple_choice_answer": [f"color{i}" for i in range(n)],
        "answers": [[{"answer": f"color{i}", "answer_confidence": "yes", "answer_id": j} for j in range(1, 4)]
                    for i in range(n)],
        "image_id": list(range(100, 100 + n)),
        "answer_type": ["other"] * n,
        "question_id": [1000 + i for i in range(n)],
        "question": [f"What color is shape {i}?" for i in range(n)],
        "image": [{"bytes": png(i), "path": None} for i in range(n)],
    }


def karpathy_rows(n: int = 4) -> dict:
    """yerevann/coco-karpathy's columns, with the images in an ``image`` column."""
    return {
        "filepath": ["val2014"] * n, "sentids": [[i * 5 + j for j in range(2)] for i in range(n)],
        "filename": [f"COCO_val2014_{i:012d}.jpg" for i in range(n)], "imgid": list(range(n)),
        "split": ["test"] * n, "sentences": [[f"A shape number {i}.", f"Picture {i}."] for i in range(n)],
        "cocoid": [500 + i for i in range(n)], "url": [f"http://example.invalid/{i}.jpg" for i in range(n)],
        "image": [{"bytes": png(i), "path": None} for i in range(n)],
    }


ROWS = {"pope": pope_rows, "vqav2": vqav2_rows, "coco-karpathy": karpathy_rows}


def table(rows: dict):
    """A datasets.Dataset with an Image feature for the ``image`` column."""
    features = datasets.Dataset.from_dict({k: v for k, v in rows.items() if k != "image"}).features
    if "image" in rows:
        features["image"] = datasets.Image()
    return datasets.Dataset.from_dict(rows, features=features)


def write_parquet(path, rows: dict):
    table(rows).to_parquet(str(path))
    return path


def write_jsonl_route(folder, samples: list[dict]):
    """The samples of ``hf:`` data as a JSONL file, each image's bytes written out as a file."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, sample in enumerate(samples):
        image = folder / f"image{i}.png"
        image.write_bytes(sample["image"].read())
        lines.append(json.dumps({**sample, "image": str(image)}) + "\n")
    path = folder / "samples.jsonl"
    path.write_text("".join(lines))
    return path


@pytest.fixture(autouse=True)
def hf_cache(tmp_path, monkeypatch):
    """The datasets cache (parquet converted to arrow) in the test's folder, no progress bars."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    datasets.disable_progress_bars()
