"""Writing a shift analysis: JSON results, safetensors tensors, figures, as one unit
(:class:`xlvlm.io.OutputUnit`: result.json, ``{"stage": "shift", ...}``, last, lists the SHA-256 of every other file)."""

from __future__ import annotations

from pathlib import Path

from xlvlm.figures import bar_chart, concept_grid
from xlvlm.io import RESULT_FILE, OutputUnit, atomic_save_tensors, atomic_write_json, atomic_write_text, stage_result

# What a previous run may have left that this one replaces.
OWNED = ["shift.safetensors", "shift_grid.png", "shift_recovery.png", "shift_coherence.png", "command.txt"]


def write_shift(result, out, samples_by_id: dict | None = None, command: str | None = None) -> dict:
    """Write ``result.json``, ``shift.safetensors``, ``shift_grid.png``, ``shift_recovery.png``,
    ``shift_coherence.png`` (and ``command.txt`` with ``command``) into ``out``, as one unit: a
    run that stops early leaves the previous ones as they were. Returns the paths written."""
    out = Path(out)
    with OutputUnit(out, RESULT_FILE, OWNED) as unit:
        names = _write_files(result, unit.work, samples_by_id)
        if command is not None:
            atomic_write_text(unit.work / "command.txt", command)
        unit.commit()
    return {key: out / name for key, name in names.items()}


def _write_files(result, out: Path, samples_by_id: dict | None) -> dict:
    """The unit's files, result.json last; returns their names by kind."""
    K = len(result.recovery)
    atomic_save_tensors(out / "shift.safetensors", {
        "shift_vectors": result.shift_vectors, "shifted_concepts": result.shifted_concepts,
        "original_concepts": result.original_concepts, "finetuned_concepts": result.finetuned_concepts,
        "match": result.match, "assignment": result.assignment,
    })
    per_concept = [{"concept": k, "matched_finetuned": int(result.match[k]), **result.recovery[k],
                    "stats": result.stats[k],
                    **{f"words_{name}": result.words[name][k] for name in ("original", "shift", "shifted", "finetuned")
                       if name in result.words},
                    **{f"mas_{name}": [result.ids[i] for i in result.mas[name][k]] for name in result.mas}}
                   for k in range(K)]
    paths = {"json": out / RESULT_FILE, "tensors": out / "shift.safetensors"}
    labels = [f"c{k}" for k in range(K)]
    paths["recovery"] = bar_chart({"cos(original, ft)": [r["cos_original"] for r in result.recovery],
                                   "cos(shifted, ft)": [r["cos_shifted"] for r in result.recovery]},
                                  out / "shift_recovery.png", labels, "cosine to matched fine-tuned concept",
                                  "Recovery: shifted concepts vs original, against the fine-tuned concepts")
    paths["coherence"] = bar_chart({"mean pairwise cos of shifts": [s["mean_pairwise_cosine"] for s in result.stats],
                                    "mean cos to mean shift": [s["mean_cosine_to_mean"] for s in result.stats]},
                                   out / "shift_coherence.png", labels, "cosine",
                                   "Coherence of the per-sample shifts of each concept")
    if samples_by_id:
        def images(name, k):
            # Stores of features made elsewhere (FeatureStore.from_tensors) may name no image.
            return [samples_by_id[result.ids[i]]["image"] for i in result.mas[name][k]
                    if samples_by_id.get(result.ids[i], {}).get("image")]

        def words(name, k):
            return result.words.get(name, [[]] * K)[k]

        rows = [[{"label": f"c{k} original", "words": words("original", k), "images": images("original", k)},
                 {"label": f"c{k} shifted", "words": words("shifted", k), "images": images("shifted", k)},
                 {"label": f"ft c{int(result.match[k])} (matched)", "words": words("finetuned", k),
                  "images": images("finetuned", k)}] for k in range(K)]
        paths["grid"] = concept_grid(rows, out / "shift_grid.png", titles=["original", "shifted", "fine-tuned"])
    atomic_write_json(out / RESULT_FILE, stage_result("shift", settings=result.settings, summary=result.summary(),
                                                      unembedding=result.words.get("unembedding"),
                                                      concepts=per_concept))
    return {key: Path(path).name for key, path in paths.items()}
