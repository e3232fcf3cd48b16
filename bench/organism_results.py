"""Workflow results on the model organism, as markdown tables for docs/organism-results.md.

    python bench/organism_results.py [--demo runs/demo [--figures docs/img]]

1. Concepts: for snmf, nndl, kmeans and pca (K=12) on last-prompt states of 480 shape and
   colour test questions, the share of concepts whose top grounded word equals the majority
   answer of their 20 most activating samples.
2. The token of interest: on the fine-tuned organism's test captions, how often the logit lens
   of the kept rows reads the word of interest (token:, class:) or the next word (token-at:,
   class-at:), in generate and teacher-forcing modes.
3. With --demo DIR (a finished `xlvlm demo --out DIR`): the shift summary (with the research
   code's normalisation next to xlvlm's), the steering sweep and the caption-steering table
   from that run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from pathlib import Path

import xlvlm
from xlvlm.concepts.grounding.text import ground_text
from xlvlm.apps.organism.data import stratified_subset, vqa_samples


def concept_table(vlm) -> str:
    questions = [s for s in vqa_samples("test") if s["answer_type"] in ("shape", "color")]
    samples = stratified_subset(questions, per_type=240, seed=0)
    layer = vlm.num_layers // 2
    with tempfile.TemporaryDirectory() as tmp:
        store = xlvlm.extract(vlm, samples, layers=[layer], select="last-prompt", out=Path(tmp) / "s", batch_size=64,
                              progress=False)
        X = store.features(layer, present_only=True)
        rows_meta = store.samples
    vocabulary = frozenset(w for w in vlm.tokenizer.get_vocab() if w.isalpha())
    lines = [f"Layer {layer} of {vlm.num_layers}, {len(samples)} questions, K = 12.", "",
             "| method | concepts whose top word = majority answer of their 20 MAS | R² |", "|---|---|---|"]
    for method in ("snmf", "nndl", "kmeans", "pca"):
        cd = xlvlm.learn_concepts(X, method=method, n_concepts=12, seed=0)
        words = ground_text(vlm, cd.components, layer, top_k=3, vocabulary=vocabulary)
        mas = xlvlm.ground_images(cd.activations, rows_meta, top_k=20)
        agree = 0
        for k in range(12):
            if mas[k] and words[k]:
                majority = Counter(rows_meta[i]["answer"] for i in mas[k]).most_common(1)[0][0]
                agree += words[k][0] == majority
        from xlvlm.concepts.metrics import reconstruction_r2
        lines.append(f"| {method} | {agree}/12 ({100 * agree / 12:.0f}%) | {float(reconstruction_r2(X, cd)):.3f} |")
    return "\n".join(lines)


def token_of_interest_table() -> str:
    """Logit lens (LM head of `final` rows) of each selector's rows vs the word it should read."""
    import torch

    from xlvlm.features.run import extract_batch_generated, extract_batch_teacher_forced
    from xlvlm.features.selectors import parse_selector
    from xlvlm.apps.organism.data import COLOR_NAMES, caption_samples

    vlm = xlvlm.organism.load("finetuned")
    samples = caption_samples("test", with_color=True)

    def expected(words, of_interest, at):
        for i, w in enumerate(words):
            if of_interest(w):
                return (words[i + 1] if i + 1 < len(words) else "</s>") if at else w
        return None

    specs = {"token:circle": (lambda w: w == "circle", False), "token-at:circle": (lambda w: w == "circle", True),
             "class:colors": (lambda w: w in COLOR_NAMES, False), "class-at:colors": (lambda w: w in COLOR_NAMES, True)}
    lines = [f"Fine-tuned organism, its {len(samples)} test captions (\"a red circle\"); logit lens of the `final` rows "
             "(the LM head) against the word of interest (`token:`, `class:`) or the word after it (`-at` forms).", "",
             "| selector | kept state | generate (greedy) | teacher-forced (reference caption) |", "|---|---|---|---|"]
    for spec, (of_interest, at) in specs.items():
        cells = []
        for generate in (True, False):
            selector = parse_selector(spec)
            hits = total = 0
            for start in range(0, len(samples), 64):
                batch = samples[start:start + 64]
                if generate:
                    r = extract_batch_generated(vlm, batch, ["final"], selector, 4)
                    texts = r.predictions
                else:
                    r = extract_batch_teacher_forced(vlm, batch, ["final"], selector)
                    texts = [s["answer"] for s in batch]
                wanted = [expected(t.split(), of_interest, at) for t in texts]
                rows = r.rows["final"][torch.tensor(r.present)]
                with torch.no_grad():
                    read = vlm.tokenizer.convert_ids_to_tokens(vlm.lm_head(rows).argmax(-1).tolist())
                kept = [w for w in wanted if w is not None]
                hits += sum(a == b for a, b in zip(read, kept))
                total += len(kept)
            cells.append(f"{hits}/{total}")
        what = "at the word: reads the next word" if at else "produces the word: reads the word"
        lines.append(f"| `{spec}` | {what} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def shift_method_table(folder: Path, seeds=(0, 1, 2)) -> str:
    """Shift recovery and shift words for each concept method, on the demo's caption stores."""
    from xlvlm.apps.organism.data import ANSWER_WORDS, COLOR_NAMES
    from xlvlm.shift import analyse_shift

    original = xlvlm.FeatureStore(folder / "features" / "caption-original")
    finetuned = xlvlm.FeatureStore(folder / "features" / "caption-finetuned")
    layer = original.layers[0]
    ft = xlvlm.organism.load("finetuned")
    colour_of = {s["id"]: s["color"] for s in finetuned.samples}
    lines = [f"Layer {layer}, the state at the caption's first token \"a\" (`token-at:a`), K = 8, seeds {', '.join(map(str, seeds))} (mean, and the "
             "worst seed); words through the fine-tuned unembedding, among the organism's answer words.", "",
             "| method | concepts closer after the shift | worst seed | shift's top word is a colour "
             "| = majority colour of the concept's images |", "|---|---|---|---|---|"]
    for method in ("snmf", "nndl", "kmeans", "pca"):
        closer, colour, majority = [], [], []
        for seed in seeds:
            r = analyse_shift(original, finetuned, layer, n_concepts=8, method=method, seed=seed, vlm=ft,
                              words_vocabulary=frozenset(ANSWER_WORDS))
            closer.append(r.summary()["share_closer_by_cosine"])
            for k, words in enumerate(r.words["shift"]):
                members = [colour_of[i] for i, label in zip(r.ids, r.assignment.tolist()) if label == k]
                if not members or not words:
                    continue
                colour.append(words[0] in COLOR_NAMES)
                majority.append(words[0] == Counter(members).most_common(1)[0][0])
        lines.append(f"| {method} | {100 * sum(closer) / len(closer):.0f}% | {100 * min(closer):.0f}% | "
                     f"{100 * sum(colour) / len(colour):.0f}% | {100 * sum(majority) / len(majority):.0f}% |")
    return "\n".join(lines)


def gate_table(folder: Path) -> str:
    """Which test questions each kind of yes/no gate lets through (the demo's training stores, layer 0)."""
    import torch

    from xlvlm.apps.demo import _subset
    from xlvlm.steer import Condition

    vlm = xlvlm.organism.load("original")
    stores = {n: xlvlm.FeatureStore(folder / "features" / f"steer-{n}") for n in ("yes-paired", "no-paired", "other")}
    positive = torch.cat([stores[n].features("0", present_only=True) for n in ("yes-paired", "no-paired")])
    negative = stores["other"].features("0", present_only=True)
    test = _subset(vqa_samples("test"), ("yes/no", "shape", "color"), 300, seed=2)  # the demo's test questions
    with tempfile.TemporaryDirectory() as tmp:
        store = xlvlm.extract(vlm, test, layers=[0], out=Path(tmp) / "t", batch_size=64, progress=False)
        X = store.features("0", present_only=True)
        rows = [r for r, ok in zip(store.samples, store.present.tolist()) if ok]
    types = ("yes/no", "shape", "color")
    lines = ["| gate direction | " + " | ".join(f"{t} questions steered" for t in types) + " |",
             "|---|" + "---|" * len(types)]
    for method in ("lda", "mean-diff"):
        steered = Condition.learn(positive, negative, 0, method=method).decide(X).tolist()
        cells = []
        for t in types:
            idx = [i for i, r in enumerate(rows) if r["answer_type"] == t]
            cells.append(f"{100 * sum(steered[i] for i in idx) / len(idx):.0f}% of {len(idx)}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def demo_tables(folder: Path) -> str:
    parts = []
    shift = json.loads((folder / "shift" / "result.json").read_text())
    s = shift["summary"]
    parts += ["### Shift (caption prompt, original -> fine-tuned)", "",
              f"{s['n_samples']} images, {s['n_concepts']} concepts: shifted concepts closer (cosine) to their matched "
              f"fine-tuned concept than the original concepts for {100 * s['share_closer_by_cosine']:.0f}% of concepts "
              f"(mean cosine {s['mean_cos_original']:.3f} -> {s['mean_cos_shifted']:.3f}).", "",
              "Normalised improvement: (cos' - cos) / (1 - cos), the share of the gap closed (xlvlm); relative: "
              "(cos' - cos) / cos, the research code's normalisation ([research-code.md](research-code.md)).", "",
              "| concept | cos orig -> ft | cos shifted -> ft | normalised | relative (research) "
              "| words of the shift vector (fine-tuned unembedding) |",
              "|---|---|---|---|---|---|"]

    def fmt(value):
        return "n/a" if value is None else f"{value:.3f}"

    for c in shift["concepts"]:
        parts.append(f"| {c['concept']} | {c['cos_original']:.3f} | {c['cos_shifted']:.3f} | "
                     f"{fmt(c.get('cos_improvement_normalised'))} | {fmt(c.get('cos_improvement_relative'))} | "
                     f"{', '.join(c.get('words_shift', [])[:5])} |")
    parts += ["", "![shift recovery: cosine to the matched fine-tuned concept, original vs shifted]"
              "(img/shift_recovery.png)"]
    parts += ["", "### Shift by concept method", "", shift_method_table(folder)]
    parts += ["", "### Steering yes -> no", "", "Gated (a condition learnt at layer 0 steers yes/no questions only):", "",
              (folder / "steer-yes-no" / "sweep.md").read_text().split("\n", 2)[2],
              "Ungated (the same mean-diff vectors on every question):", "",
              (folder / "steer-yes-no" / "ungated" / "sweep.md").read_text().split("\n", 2)[2],
              "| gated | ungated |", "|---|---|",
              "| ![gated sweep](img/sweep_yes_no.png) | ![ungated sweep](img/sweep_yes_no_ungated.png) |"]
    parts += ["", "### The yes/no gate", "", "Learnt at layer 0 from the training stores above; the demo's 300 test "
              "questions:", "", gate_table(folder)]
    parts += ["", "### Steering red -> blue (colour questions)", "",
              (folder / "steer-red-blue" / "sweep.md").read_text().split("\n", 2)[2]]
    cap = json.loads((folder / "steer-caption" / "result.json").read_text())["data"]  # the demo's "table" stage
    parts += ["### Caption steering with the shift vector", "",
              "| captions by | name a colour | right colour | right shape |", "|---|---|---|---|"]
    for r in cap["rows"]:
        parts.append(f"| original, alpha {r['alpha']:g} | {100 * r['names_color']:.0f}% | {100 * r['color_correct']:.0f}% | "
                     f"{100 * r['shape_correct']:.0f}% |")
    ft = cap["finetuned"]
    parts.append(f"| fine-tuned (reference) | {100 * ft['names_color']:.0f}% | {100 * ft['color_correct']:.0f}% | "
                 f"{100 * ft['shape_correct']:.0f}% |")
    from xlvlm.apps.organism.hallucination_steering import table_lines

    hallucination = json.loads((folder / "steer-hallucination" / "result.json").read_text())
    parts += ["", "### Hallucination steering (the demo's slice)", "",
              f"The hallucinating organism on {hallucination['n_test']} held-out POPE-style questions, every method "
              f"learnt from {hallucination['n_train']} training questions; F1 / yes-ratio in %. A slice this small "
              "separates little: the full comparison is in [hallucination](hallucination.md#steering-the-hallucination-"
              "away-fixed-gated-per-sample-p2s-learned-l2s).", "", "```", *table_lines(hallucination), "```"]
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", help="a finished demo run folder")
    parser.add_argument("--figures", help="with --demo: copy the figures the tables link to into this folder "
                        "(docs/img)")
    args = parser.parse_args()
    vlm = xlvlm.organism.load("original")
    print("### Concepts\n")
    print(concept_table(vlm))
    print("\n### Token of interest\n")
    print(token_of_interest_table())
    if args.demo:
        print()
        print(demo_tables(Path(args.demo)))
        if args.figures:
            import shutil

            demo = Path(args.demo)
            for source, name in ((demo / "shift" / "shift_recovery.png", "shift_recovery.png"),
                                 (demo / "steer-yes-no" / "sweep.png", "sweep_yes_no.png"),
                                 (demo / "steer-yes-no" / "ungated" / "sweep.png", "sweep_yes_no_ungated.png")):
                shutil.copyfile(source, Path(args.figures) / name)


if __name__ == "__main__":
    main()
