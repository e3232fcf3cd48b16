"""``xlvlm demo``: every workflow, end to end, on the shipped model organism.

Stages (each writes its own folder under ``out`` and is skipped when its results exist, so a
second run reuses them; feature stores are reused by ``extract`` itself):

  concepts/       last-prompt states of shape and colour questions -> semi-NMF -> words, MAS,
                  metrics, concept grid, patch heatmaps
  shift/          captions begun with "a" through the original and the fine-tuned organism ->
                  shift vectors of the original concepts, recovery, figures
  steer-yes-no/   a yes -> no vector from answered training questions, gated by a condition
                  learnt to tell yes/no questions from the rest; layer x alpha x method sweep,
                  and the same mean-diff sweep without the gate in ungated/
  steer-red-blue/ a red -> blue vector on colour questions, side effects on the other types
  steer-caption/  the mean shift (original -> fine-tuned) at that "a" as a steering
                  vector for the original organism: do its captions start naming colours?
  steer-hallucination/ the hallucinating organism's "yes" bias on POPE-style questions: no
                  steering, mean-diff, gated mean-diff, P2S (oracle) and L2S, on a bounded slice
  report.html     all of it in one page
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

from xlvlm.errors import XlvlmError, argument

from xlvlm.io import RESULT_FILE, OutputUnit, atomic_write_json, atomic_write_text, stage_result
from xlvlm.progress import announce

DEMO_MARK = "xlvlm-demo.txt"  # says the folder is a demo run's: a second run reuses it
QUICK = {"concept_questions": 120, "caption_images": 80, "steer_train": 60, "steer_test": 90,
         "alphas": [2.0], "methods": ["mean-diff"], "caption_alphas": [1.0], "text_similarity": False,
         "patching_pairs": 4,
         "hallucination": {"train_images": 12, "test_images": 8, "side_questions": 20, "epochs": 20}}
FULL = {"concept_questions": 480, "caption_images": 240, "steer_train": 150, "steer_test": 300,
        "alphas": [1.0, 2.0, 4.0], "methods": ["mean-diff", "mean-of-shifts", "pca", "concept"],
        "caption_alphas": [0.5, 1.0, 2.0], "text_similarity": True, "patching_pairs": 8,
        "hallucination": {"train_images": 24, "test_images": 16, "side_questions": 40, "epochs": 30}}


def _stage_done(folder: Path, stage: str) -> bool:
    """Whether ``folder`` holds a finished result of ``stage`` (a second demo run reuses it)."""
    try:
        return json.loads((folder / RESULT_FILE).read_text(encoding="utf-8")).get("stage") == stage
    except (OSError, ValueError, AttributeError):
        return False


def _command(folder: Path, out: Path, stage: str, equivalent: list[str]) -> None:
    text = f"xlvlm demo --out {shlex.quote(str(out))}    # stage: {stage}\n# the same with the CLI, step by step:\n"
    atomic_write_text(folder / "command.txt", text + "\n".join(equivalent) + "\n")


def _subset(samples: list[dict], types: tuple[str, ...], n: int, seed: int) -> list[dict]:
    from xlvlm.apps.organism.data import stratified_subset

    chosen = [s for s in samples if s.get("answer_type") in types]
    return stratified_subset(chosen, per_type=max(1, n // len(types)), seed=seed)


def _answer_pairs(samples: list[dict], source: str, target: str, n: int) -> tuple[list[dict], list[dict]]:
    """Up to ``n`` images with a ``source``-answered and a ``target``-answered question each, the
    two sharing the id ``pair-<image>``: the pairs that mean-of-shifts and pca steering need."""
    first: dict[str, dict] = {}
    for s in samples:
        if s.get("answer") in (source, target):
            first.setdefault((s["image_id"], s["answer"]), s)
    images = [i for i in dict.fromkeys(k[0] for k in first) if (i, source) in first and (i, target) in first][:n]
    return tuple([{**first[(i, answer)], "id": f"pair-{i}"} for i in images] for answer in (source, target))


def _vocabulary(vlm) -> frozenset:
    """The organism's own words (its tokenizer is word-level): grounding keeps only these."""
    return frozenset(w for w in vlm.tokenizer.get_vocab() if w.isalpha())


def stage_concepts(vlm, out: Path, root: Path, size: dict, layer: int, progress: bool) -> None:
    import xlvlm
    from xlvlm.concepts.workflow import run_concepts
    from xlvlm.apps.organism.data import vqa_samples

    folder = out / "concepts"
    if _stage_done(folder, "concepts"):
        return
    samples = _subset(vqa_samples("test"), ("shape", "color"), size["concept_questions"], seed=0)
    store = xlvlm.extract(vlm, samples, layers=[layer], select="last-prompt", out=out / "features" / "qa-original",
                          batch_size=32, progress=progress)
    run_concepts(store, layer, folder, method="snmf", n_concepts=12, vlm=vlm, vocabulary=_vocabulary(vlm),
                 text_similarity=size["text_similarity"], top_k_samples=20, progress=progress)
    _command(folder, root, "concepts", [
        f"xlvlm extract --model {vlm.name} --data QUESTIONS.jsonl --layers {layer} "
        f"--select last-prompt --out {out / 'features' / 'qa-original'}",
        f"xlvlm concepts --features {out / 'features' / 'qa-original'} --layer {layer} --method snmf --n-concepts 12 "
        f"--model {vlm.name} --out {folder}"])


def _caption_stores(original, finetuned, out: Path, size: dict, layer: int, progress: bool):
    import xlvlm
    from xlvlm.apps.organism.data import caption_samples

    samples = caption_samples("test", with_color=True)[: size["caption_images"]]
    # Both styles start with "a"; the state at that token (token-at:, not token:, which keeps the
    # state producing "a") decides what comes next (a colour or the shape), so it is where the
    # fine-tuning shows. Teacher-forced, both models see the same tokens.
    # The whole caption stays beside the forced "a" (``reference``) for whoever shows the samples.
    started = [dict(s, answer="a", reference=s["answer"]) for s in samples]
    stores = [xlvlm.extract(vlm, started, layers=[layer], select="token-at:a", out=out / "features" / f"caption-{name}",
                            batch_size=32, progress=progress)
              for name, vlm in (("original", original), ("finetuned", finetuned))]
    return samples, stores


def stage_shift(original, finetuned, out: Path, root: Path, size: dict, layer: int, progress: bool) -> None:
    from xlvlm.apps.organism.data import ANSWER_WORDS
    from xlvlm.shift import analyse_shift, write_shift

    folder = out / "shift"
    if _stage_done(folder, "shift"):
        return
    samples, (o, f) = _caption_stores(original, finetuned, out, size, layer, progress)
    # Words the organism was trained to say (its answers, also its captions' content words): the
    # question-only words were never targets, so their unembedding rows mean nothing to ground in.
    words_file = folder / "output-words.txt"
    atomic_write_text(words_file, "\n".join(ANSWER_WORDS) + "\n")
    # k-means concepts are centroids, so original + shift is the fine-tuned mean of the same
    # samples: the comparison the recovery metrics make (docs/organism-results.md compares methods).
    result = analyse_shift(o, f, layer, n_concepts=8, method="kmeans", vlm=finetuned,
                           words_vocabulary=frozenset(ANSWER_WORDS))
    write_shift(result, folder, {s["id"]: s for s in f.samples})
    _command(folder, root, "shift", [
        f"xlvlm extract --model {m.name} --data CAPTIONS_STARTING_A.jsonl --layers {layer} --select token-at:a "
        f"--out {out / 'features' / f'caption-{n}'}" for n, m in (("original", original), ("finetuned", finetuned))] + [
        f"xlvlm shift --original {o.path} --finetuned {f.path} --layer {layer} --n-concepts 8 --method kmeans "
        f"--model {finetuned.name} --words {words_file} --out {folder}"])


def stage_steer_yes_no(vlm, out: Path, root: Path, size: dict, layers: list[int], condition_layer: int,
                       progress: bool) -> None:
    import xlvlm
    from xlvlm.apps.organism.data import vqa_samples
    from xlvlm.steer import Condition
    from xlvlm.steer.condition import save_condition
    from xlvlm.steer.run import sweep_stores

    folder = out / "steer-yes-no"
    if _stage_done(folder, "sweep"):
        return
    train = vqa_samples("train")
    n = size["steer_train"]
    yes, no = _answer_pairs(train, "yes", "no", n)
    other = _subset(train, ("shape", "color"), n, seed=1)
    all_layers = sorted(set(layers) | {condition_layer})
    stores = {name: xlvlm.extract(vlm, rows, layers=all_layers, select="last-prompt",
                                  out=out / "features" / f"steer-{stem}", batch_size=32, progress=progress)
              for name, stem, rows in (("yes", "yes-paired", yes), ("no", "no-paired", no), ("other", "other", other))}
    key = str(condition_layer)
    questions = stores["yes"].features(key, present_only=True)
    questions = questions.new_tensor(questions.tolist() + stores["no"].features(key, present_only=True).tolist())
    condition = Condition.learn(questions, stores["other"].features(key, present_only=True), condition_layer)
    save_condition(condition, folder / "condition.safetensors", overwrite=True)
    test = _subset(vqa_samples("test"), ("yes/no", "shape", "color"), size["steer_test"], seed=2)
    # The same vector without the gate first (written to ungated/): what the gate prevents.
    sweep_stores(vlm, stores["yes"], stores["no"], test, layers=layers, alphas=size["alphas"], methods=["mean-diff"],
                 source_answer="yes", target_answer="no", max_new_tokens=3, batch_size=32, out=folder / "ungated",
                 progress=progress, overwrite=True)
    sweep_stores(vlm, stores["yes"], stores["no"], test, layers=layers, alphas=size["alphas"], methods=size["methods"],
                 source_answer="yes", target_answer="no", condition=condition, max_new_tokens=3, batch_size=32,
                 out=folder,
                 progress=progress, overwrite=True)  # the stage's folder: an unfinished stage is redone
    _command(folder, root, "steer yes -> no", [
        f"xlvlm extract --model {vlm.name} --data {{YES,NO,OTHER}}.jsonl --layers "
        f"{','.join(map(str, all_layers))} --select last-prompt --out {out / 'features'}/steer-{{yes-paired,no-paired,other}}",
        f"xlvlm steer condition --positive YES_AND_NO_STORE --negative {out / 'features' / 'steer-other'} "
        f"--layer {condition_layer} --out {folder / 'condition.safetensors'}",
        f"xlvlm steer sweep --model {vlm.name} --source {stores['yes'].path} --target "
        f"{stores['no'].path} --data TEST.jsonl --layers {','.join(map(str, layers))} --alphas "
        f"{','.join(f'{a:g}' for a in size['alphas'])} --methods {','.join(size['methods'])} "
        f"--condition {folder / 'condition.safetensors'} --out {folder}"])


def stage_steer_color(vlm, out: Path, root: Path, size: dict, layers: list[int], source: str, target: str,
                      progress: bool) -> None:
    """Colour -> colour: move colour answers from ``source`` to ``target`` (e.g. red -> blue)."""
    import xlvlm
    from xlvlm.apps.organism.data import vqa_samples
    from xlvlm.steer import Condition
    from xlvlm.steer.condition import save_condition
    from xlvlm.steer.run import sweep_stores

    folder = out / f"steer-{source}-{target}"
    if _stage_done(folder, "sweep"):
        return
    everything = vqa_samples("train")
    train = [s for s in everything if s.get("answer_type") == "color"]
    n = size["steer_train"]
    all_layers = sorted(set(layers) | {0})
    stores = {c: xlvlm.extract(vlm, [s for s in train if s["answer"] == c][:n], layers=all_layers, select="last-prompt",
                               out=out / "features" / f"steer-{c}", batch_size=32, progress=progress)
              for c in (source, target)}
    # A gate like the yes/no one: steer colour questions only.
    others = xlvlm.extract(vlm, _subset(everything, ("shape", "yes/no"), n, seed=4), layers=all_layers,
                           select="last-prompt", out=out / "features" / "steer-not-color", batch_size=32, progress=progress)
    colours = xlvlm.extract(vlm, _subset(everything, ("color",), n, seed=4), layers=all_layers, select="last-prompt",
                            out=out / "features" / "steer-color", batch_size=32, progress=progress)
    condition = Condition.learn(colours.features(0, present_only=True), others.features(0, present_only=True), 0)
    save_condition(condition, folder / "condition.safetensors", overwrite=True)
    test = vqa_samples("test")
    chosen = [s for s in test if s.get("answer") == source][: size["steer_test"] // 3]
    chosen += _subset(test, ("shape", "yes/no"), 2 * (size["steer_test"] // 3), seed=3)
    sweep_stores(vlm, stores[source], stores[target], chosen, layers=layers, alphas=size["alphas"],
                 methods=["mean-diff"],
                 source_answer=source, target_answer=target, condition=condition, max_new_tokens=3, batch_size=32,
                 out=folder,
                 progress=progress, overwrite=True)
    _command(folder, root, f"steer {source} -> {target}", [
        f"xlvlm extract --model {vlm.name} --data {source.upper()}_AND_{target.upper()}.jsonl --layers "
        f"{','.join(map(str, layers))} --select last-prompt --out {out / 'features'}/steer-{{{source},{target}}}",
        f"xlvlm steer sweep --model {vlm.name} --source {stores[source].path} --target {stores[target].path} --data "
        f"TEST.jsonl --layers {','.join(map(str, layers))} --source-answer {source} --target-answer {target} --out {folder}"])


def stage_patching(vlm, out: Path, root: Path, size: dict, progress: bool) -> None:
    """Activation patching on colour pairs (one drawing in two colours): where the colour is read."""
    from xlvlm.apps.organism.colour_pairs import colour_pairs
    from xlvlm.data.jsonl import write_jsonl
    from xlvlm.patching import make_pairs, patch
    from xlvlm.patching.outputs import write_patching

    folder = out / "patching"
    if _stage_done(folder, "patch"):
        return
    images = out / "patching-pairs"
    clean, corrupted = colour_pairs(images, n=size["patching_pairs"], seed=0)
    write_jsonl(clean, images / "clean.jsonl")
    write_jsonl(corrupted, images / "corrupted.jsonl")
    result = patch(vlm, make_pairs(clean, corrupted), positions="groups", batch_size=32, progress=progress)
    command = (f"xlvlm demo --out {shlex.quote(str(root))}    # stage: patching\n# the same with the CLI:\n"
               f"xlvlm patch --model organism:original --clean {images / 'clean.jsonl'} --corrupted "
               f"{images / 'corrupted.jsonl'} --positions groups --out {folder}\n")
    write_patching(result, folder, command=command, model="organism:original")


def stage_steer_caption(original, finetuned, out: Path, root: Path, size: dict, layer: int, progress: bool) -> None:
    from xlvlm.apps.organism.captions import naming_report
    from xlvlm.steer import SteeringVector
    from xlvlm.steer.run import predict

    folder = out / "steer-caption"
    if _stage_done(folder, "table"):
        return
    samples, (o, f) = _caption_stores(original, finetuned, out, size, layer, progress)
    vector = SteeringVector.mean_difference(o, f, [layer])
    rows = []
    for alpha in [0.0] + list(size["caption_alphas"]):
        preds = predict(original, samples, vector, alpha=alpha, max_new_tokens=5, batch_size=32, progress=progress,
                        desc=f"captions alpha={alpha:g}")
        report = naming_report(preds)
        rows.append({"alpha": alpha, **report, "examples": [p["prediction"] for p in preds[:4]]})
    reference = naming_report(predict(finetuned, samples, max_new_tokens=5, batch_size=32, progress=progress,
                                       desc="fine-tuned captions"))
    with OutputUnit(folder, RESULT_FILE, ["shift-vector.safetensors"]) as unit:
        vector.save(unit.work / "shift-vector.safetensors")
        atomic_write_json(unit.work / RESULT_FILE, _caption_table(rows, reference, layer, len(samples)))
        unit.commit()
    _command(folder, root, "caption steering", [
        f"xlvlm steer compute --source {o.path} --target {f.path} --layer {layer} --out {folder / 'shift-vector.safetensors'}",
        f"xlvlm steer apply --model {original.name} --vector {folder / 'shift-vector.safetensors'} "
        f"--alpha 1 --data CAPTIONS.jsonl --out PRED.jsonl"])


def stage_steer_hallucination(out: Path, root: Path, size: dict, progress: bool) -> list[str]:
    """The hallucination-steering comparison on a bounded slice; returns its table's lines."""
    from xlvlm.apps.organism.hallucination_steering import (ComparisonSettings, compare_steering, table_lines,
                                                            write_comparison)

    folder = out / "steer-hallucination"
    if not _stage_done(folder, "hallucination-steering"):
        h = size["hallucination"]
        result = compare_steering(ComparisonSettings(**h), progress=progress)
        write_comparison(result, folder, command=(
            f"xlvlm demo --out {shlex.quote(str(root))}    # stage: hallucination steering\n# the same with the CLI:\n"
            f"xlvlm organism steer-hallucination --train-images {h['train_images']} --test-images "
            f"{h['test_images']} --side-questions {h['side_questions']} --epochs {h['epochs']} --out {folder}"))
    return table_lines(json.loads((folder / RESULT_FILE).read_text(encoding="utf-8")))


def _caption_table(rows: list[dict], reference: dict, layer: int, n: int) -> dict:
    """The caption-steering result as a self-describing table (the report's "table" stage), with
    the measurements themselves under ``data``."""
    table = [[f"original, alpha {r['alpha']:g}", r.get("names_color"), r.get("color_correct"), r.get("shape_correct"),
              r.get("examples", [])] for r in rows]
    table.append(["fine-tuned model (reference)", reference.get("names_color"), reference.get("color_correct"),
                  reference.get("shape_correct"), []])
    about = (f'The mean shift of the state at the caption\'s first token "a" (original -> fine-tuned, layer {layer}) '
             f"added to the original model while it captions {n} test images: how often its captions name a colour, "
             f"and whether they name the right colour and shape.")
    return stage_result("table", title="Caption steering", about=about,
                        header=["captions by", "name a colour", "right colour", "right shape", "examples"],
                        rows=table, data={"layer": str(layer), "rows": rows, "finetuned": reference, "n": n})


def run_demo(out: str | Path = "runs/demo", quick: bool = False, progress: bool = True,
             overwrite: bool = False) -> dict:
    """Run every stage into ``out`` (reusing the stages a demo run there finished) and build
    ``out/report.html``. ``overwrite=True`` deletes an earlier demo run at ``out`` first; a
    folder that holds anything else is refused."""
    import xlvlm
    from xlvlm.report import build_report

    out = Path(out)
    _claim_folder(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    size = QUICK if quick else FULL
    original, finetuned = xlvlm.organism.load("original"), xlvlm.organism.load("finetuned")
    n = original.num_layers
    middle = n // 2
    stage = _Stages(progress)
    stage("concepts of the original organism's answers (snmf, grounded in words)")
    stage_concepts(original, out, out, size, middle, progress)
    stage("shift of caption concepts from the original to the fine-tuned organism")
    stage_shift(original, finetuned, out, out, size, n - 1, progress)
    stage("steering yes -> no, gated by a condition (sweep over layers and alphas)")
    stage_steer_yes_no(original, out, out, size, layers=[middle] if quick else list(range(1, n)),
                       condition_layer=0, progress=progress)
    stage("steering red -> blue on colour questions")
    stage_steer_color(original, out, out, size, layers=[middle] if quick else list(range(1, n)), source="red",
                      target="blue", progress=progress)
    stage("activation patching of colour pairs (layers x position groups)")
    stage_patching(original, out, out, size, progress)
    stage("steering captions with the fine-tuning shift")
    stage_steer_caption(original, finetuned, out, out, size, n - 1, progress)
    stage("hallucination steering of the hallucinating organism (5 methods)")
    hallucination = stage_steer_hallucination(out, out, size, progress)
    stage("report")
    atomic_write_text(out / "notes.txt", (
        "Everything below ran on the model organism: a small real LLaVA "
        f"({sum(p.numel() for p in original.model.parameters()) / 1e6:.1f}M parameters, {n} decoder layers) trained "
        "on easy-VQA by this project, and its fine-tuned variant whose captions name colours "
        "(see docs/organism.md)."))
    report = build_report(out, title="xlvlm demo on the model organism")
    summary = {"report": str(report)}
    summary.update({p.parent.name: str(p) for p in sorted(out.glob(f"*/{RESULT_FILE}"))})
    summary["hallucination steering (F1 / yes-ratio, %)"] = "\n" + "\n".join(hallucination)
    summary["serve"] = serve_command(out)
    return summary


class _Stages:
    """Announces each demo stage in one line, numbered: ``demo 2/8: shift ...``."""

    TOTAL = 8

    def __init__(self, enabled: bool):
        self.enabled, self.done = enabled, 0

    def __call__(self, what: str) -> None:
        self.done += 1
        announce(f"demo {self.done}/{self.TOTAL}: {what}", self.enabled)


def _claim_folder(out: Path, overwrite: bool) -> None:
    """Mark ``out`` as a demo run's folder; a demo run there is reused, or with ``overwrite``
    deleted first; a folder holding anything else is refused (never deleted)."""
    if (out / DEMO_MARK).is_file():
        if overwrite:
            shutil.rmtree(out)
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise XlvlmError(f"{out}: exists and is not a demo run's folder; choose another {argument('out')}")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / DEMO_MARK, "a run folder of `xlvlm demo` (a second run reuses its finished stages)\n")


def serve_command(out: Path) -> str:
    """The command that browses the demo's run and plays with the organism (``xlvlm serve``); its
    samples' images are easy-VQA's, shown once their folder is given as an image root."""
    from xlvlm.apps.organism.data import image_paths

    images = Path(next(iter(image_paths("test").values()))).parents[2]  # easy_vqa/data: train/ and test/
    return (f"xlvlm serve {shlex.quote(str(out))} --model organism:original "
            f"--image-root {shlex.quote(str(images))}")
