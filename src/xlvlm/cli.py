"""The ``xlvlm`` command line. Each command is a thin layer over the Python API.

Bad input exits with status 2 and one line ``xlvlm: error: ...``, and so does a failure of the
machine the user can fix (a full disk, a read-only folder, a file where a folder is expected:
:func:`xlvlm.errors.describe_os_error`); any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from xlvlm import cli_validate as valid
from xlvlm.errors import XlvlmError, describe_os_error


def _command_text(args) -> str:
    """The command that produced a stage's folder: its ``command.txt``, written with the stage's
    other outputs as one unit (the report shows it)."""
    import shlex

    return "xlvlm " + shlex.join(args.argv) + "\n"


def _layers(text: str) -> list:
    return [part.strip() for part in str(text).split(",") if part.strip()]


def _apply_config(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str]) -> None:
    """Fill options not given on the command line from --config (the rules: xlvlm.cli_config)."""
    if not getattr(args, "config", None):
        return
    from xlvlm.cli_config import apply_config, given_on_command_line

    leaf = next(leaf for leaf in _leaf_parsers(parser) if leaf.get_default("func") is args.func)
    apply_config(leaf, args, given_on_command_line(build_parser, argv))


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line errors of the rest of the CLI (status 2, no usage block)."""

    def error(self, message):
        self.exit(2, f"xlvlm: error: {message} (see `{self.prog} --help`)\n")


# ---- extract -------------------------------------------------------------------------------------
def add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=valid.path, required=False,
                        help="samples: a .jsonl file (id, image, prompt[, answer]), "
                        "easyvqa:train|test, coco:KARPATHY.json, vqav2:QUESTIONS.json, pope:FILE|FOLDER, "
                        "mmsafety:FOLDER, or an image folder")
    parser.add_argument("--image-root", type=valid.path, help="image folder for coco:/vqav2:/pope: data")
    parser.add_argument("--annotations", type=valid.path, help="VQAv2 annotations JSON (for vqav2: data)")
    parser.add_argument("--prompt", help="prompt for easyvqa:/coco:/vqav2:/pope:/mmsafety:/folder data (a template with {question} "
                        "for the VQA readers); default: the reader's")
    parser.add_argument("--answer-type", help="keep samples of these answer types (comma list, e.g. yes/no)")
    parser.add_argument("--contains", help="keep samples whose reference answer/caption contains this word")
    parser.add_argument("--word-class", type=valid.path,
                        help="keep samples whose answer/caption has a word of this class")
    parser.add_argument("--ids", type=valid.path, help="keep samples whose id is listed in this file (one per line)")
    parser.add_argument("--limit", type=valid.positive_int, help="keep N random samples (seeded by --seed)")
    parser.add_argument("--seed", type=valid.seed, default=0)


def load_data(args) -> list[dict]:
    if not args.data:
        raise XlvlmError("--data is required (a .jsonl file, easyvqa:test, coco:..., vqav2:... or an image folder)")
    from xlvlm.data import load_samples, select_subset

    options = {k: v for k, v in (("image_root", args.image_root), ("annotations", args.annotations),
                                  ("prompt", args.prompt)) if v}
    samples = load_samples(args.data, **options)
    return select_subset(samples, contains=args.contains, word_class=args.word_class, ids_file=args.ids,
                         n=args.limit, seed=args.seed, answer_type=args.answer_type)


def cmd_extract(args) -> None:
    import xlvlm
    from xlvlm.extract.distributed import DistributedContext

    context = DistributedContext.from_env()  # set under torchrun / accelerate launch
    samples = load_data(args)
    if not args.skip_bad:
        missing = next((s for s in samples if not Path(s["image"]).is_file()), None)
        if missing is not None:  # fail before the (slow) model load
            raise XlvlmError(f"{missing['image']}: image not found (sample {missing['id']!r}); "
                             f"fix the path or pass --skip-bad")
    if args.shard_samples < args.batch_size:
        # A shard is written after whole batches: it holds at least one, more than was asked.
        print(f"xlvlm: warning: shards hold whole batches: --shard-samples {args.shard_samples} becomes "
              f"{args.batch_size} (--batch-size)", file=sys.stderr)
    options = dict(layers=_layers(args.layers), select=args.select, out=args.out, generate=args.generate,
                   max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, shard_samples=args.shard_samples,
                   skip_bad=args.skip_bad)
    if context is None:
        vlm = xlvlm.load_vlm(args.model, device=args.device, dtype=args.dtype,
                             trust_remote_code=args.trust_remote_code)
        store = xlvlm.extract(vlm, samples, progress=not args.quiet, **options)
    else:
        store = _extract_distributed(args, context, samples, options)
        if context.rank != 0:
            return
    skipped = len(store.manifest.get("skipped", []))
    absent = int((~store.present).sum())
    print(f"wrote {store.path}: {len(store)} samples, layers {', '.join(store.layers)}, selector {store.selector}"
          + (f", {absent} without a match (present: false)" if absent else "")
          + (f", {skipped} skipped (bad images, listed in the manifest)" if skipped else ""))


def _extract_distributed(args, context, samples, options):
    """One rank of ``xlvlm extract`` under torchrun: its share of the samples, then the merge."""
    import torch.distributed as dist

    import xlvlm
    from xlvlm.extract.distributed import extract_distributed, init_process_group

    device = context.device(args.device)
    created = init_process_group(context, device)
    try:
        vlm = xlvlm.load_vlm(args.model, device=device, dtype=args.dtype, trust_remote_code=args.trust_remote_code)
        return extract_distributed(vlm, samples, context=context, progress=not args.quiet and context.rank == 0,
                                   **options)
    finally:
        if created:
            dist.destroy_process_group()


def cmd_organism_train(args) -> None:
    from xlvlm.apps.organism.train import train_organism

    summary = train_organism(args.out, seed=args.seed, minutes=args.minutes, reduced=args.reduced,
                             progress=not args.quiet)
    print(f"wrote {args.out}: {summary.get('parameters', '?')} parameters in {summary.get('seconds', 0):.0f} s")


def cmd_organism_finetune(args) -> None:
    from xlvlm.apps.organism.finetune import finetune_organism

    summary = finetune_organism(args.original, args.out, seed=args.seed, minutes=args.minutes, reduced=args.reduced,
                                progress=not args.quiet)
    print(f"wrote {args.out}: fine-tuned in {summary.get('seconds', 0):.0f} s ({summary.get('change', '')})")


def cmd_organism_hallucinate(args) -> None:
    from xlvlm.apps.organism.hallucinate import hallucinate_organism

    summary = hallucinate_organism(args.original, args.out, seed=args.seed, minutes=args.minutes,
                                   reduced=args.reduced, progress=not args.quiet)
    print(f"wrote {args.out}: fine-tuned in {summary.get('seconds', 0):.0f} s ({summary.get('change', '')})")


def cmd_organism_pope(args) -> None:
    from xlvlm.apps.organism.pope import write_pope_jsonl

    samples = write_pope_jsonl(args.out, part=args.part, seed=args.seed, images=args.images)
    print(f"wrote {args.out}: {len(samples)} POPE questions on easy-VQA {args.part} images "
          f"(random, popular, adversarial; half yes)")


def cmd_report(args) -> None:
    from xlvlm.report import build_report

    path = build_report(args.run_dir)
    print(f"wrote {path}")


def cmd_demo(args) -> None:
    from xlvlm.apps.demo import run_demo

    summary = run_demo(args.out, quick=args.quick, progress=not args.quiet)
    for key, value in summary.items():
        print(f"{key}: {value}")


# ---- steer / evaluate ------------------------------------------------------------------------------
def _store(path, args):
    """A feature store for a command: checksums and metadata verified; a partial store only with
    --allow-partial."""
    from xlvlm import FeatureStore

    return FeatureStore(path, allow_partial=getattr(args, "allow_partial", False))


def _add_partial_option(p) -> None:
    p.add_argument("--allow-partial", action="store_true",
                   help="use stores of interrupted extractions (status: partial) with the samples they hold")


def cmd_steer_compute(args) -> None:
    from xlvlm.steer import SteeringVector

    layers = _layers(args.layer)
    if args.all_pairs:
        if args.method != "concept" or not args.source or args.concepts or len(layers) != 1:
            raise XlvlmError("--all-pairs needs --method concept, --source STORE and one --layer (no --concepts)")
        pairs = SteeringVector.concept_pairs(_store(args.source, args), layers[0], n_concepts=args.n_concepts)
        for (i, j), vector in pairs.items():
            vector = vector.normalized() if args.normalize else vector
            vector.save(Path(args.out) / f"concept_{i}_to_{j}.safetensors")
        print(f"wrote {len(pairs)} vectors (concept_I_to_J = V_J - V_I) into {args.out}")
        return
    if args.method == "concept" and args.concepts:
        from xlvlm.concepts import ConceptDictionary

        if args.concept_from is None or args.concept_to is None:
            raise XlvlmError("--method concept --concepts DIR needs --from I --to J")
        cd = ConceptDictionary.load(args.concepts)
        vector = SteeringVector.from_concepts(cd, args.concept_from, args.concept_to, layers[0])
    else:
        if args.concept_from is not None or args.concept_to is not None:
            raise XlvlmError("--from/--to pick concepts of a saved dictionary: give --method concept --concepts DIR")
        if not args.source or not args.target:
            extra = " (or --concepts DIR --from I --to J)" if args.method == "concept" else ""
            raise XlvlmError(f"--method {args.method} needs --source STORE and --target STORE{extra}")
        options = {"n_concepts": args.n_concepts} if args.method == "concept" else {}
        vector = SteeringVector.compute(_store(args.source, args), _store(args.target, args), layers,
                                        method=args.method, **options)
    if args.normalize:
        vector = vector.normalized()
    vector.save(args.out)
    print(f"wrote {args.out}: {vector}")


def _condition(args):
    if not getattr(args, "condition", None):
        return None
    from xlvlm.steer.condition import load_condition

    return load_condition(args.condition)


def cmd_steer_condition(args) -> None:
    from xlvlm.steer.condition import Condition, save_condition

    positive, negative = _store(args.positive, args), _store(args.negative, args)
    layer = positive.layer_key(args.layer)
    condition = Condition.learn(positive.features(layer, present_only=True),
                                negative.features(layer, present_only=True), layer, method=args.method,
                                shrinkage=args.shrinkage)
    save_condition(condition, args.out)
    steer = condition.decide(positive.features(layer, present_only=True)).float().mean()
    keep = 1 - condition.decide(negative.features(layer, present_only=True)).float().mean()
    print(f"wrote {args.out}: layer {layer}, threshold {condition.threshold:.4g}; training accuracy "
          f"{100 * steer:.1f}% of --positive steered, {100 * keep:.1f}% of --negative left alone")


def cmd_steer_apply(args) -> None:
    import xlvlm
    from xlvlm.data.jsonl import JsonlAppender
    from xlvlm.steer import SteeringVector
    from xlvlm.steer.run import predict

    vector = SteeringVector.load(args.vector)
    samples = load_data(args)
    # Predictions are written as they come (OUT.partial, renamed to OUT at the end): an odd --out
    # fails before the model loads, and a full disk late in the run keeps what was generated.
    with JsonlAppender(args.out) as out:
        vlm = xlvlm.load_vlm(args.model, device=args.device, dtype=args.dtype,
                             trust_remote_code=args.trust_remote_code)
        try:
            records = predict(vlm, samples, vector, alpha=args.alpha, positions=args.positions,
                              operator=args.operator, condition=_condition(args), max_new_tokens=args.max_new_tokens,
                              batch_size=args.batch_size, progress=not args.quiet, on_batch=out.write)
            out.commit()
        except OSError as exc:
            if describe_os_error(exc) is None:
                raise
            raise XlvlmError(f"{describe_os_error(exc, out.partial)}; the {out.count} predictions written before "
                             f"are in {out.partial} ({args.out} is unchanged)") from None
    print(f"wrote {args.out}: {len(records)} predictions (alpha {args.alpha:g}, {vector})")


def cmd_steer_sweep(args) -> None:
    import xlvlm
    from xlvlm.steer.run import sweep_stores, sweep_table

    samples = load_data(args)
    vlm = xlvlm.load_vlm(args.model, device=args.device, dtype=args.dtype,
                         trust_remote_code=args.trust_remote_code)
    rows = sweep_stores(vlm, _store(args.source, args), _store(args.target, args), samples,
                        layers=_layers(args.layers), alphas=args.alphas, methods=_layers(args.methods),
                        source_answer=args.source_answer, target_answer=args.target_answer, positions=args.positions,
                        operator=args.operator, condition=_condition(args), normalize=args.normalize,
                        max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, out=args.out,
                        progress=not args.quiet, n_concepts=args.n_concepts, command=_command_text(args))
    print(sweep_table(rows), end="")
    print(f"wrote {args.out}/sweep.md, sweep.json, sweep.png")


def cmd_evaluate(args) -> None:
    from xlvlm.evaluation import evaluate_predictions, format_report
    from xlvlm.io import atomic_write_json

    result = evaluate_predictions(args.predictions, task=args.task, baseline=args.baseline, source=args.source,
                                  target=args.target, meteor=not args.no_meteor)
    print(format_report(result), end="")
    if args.out:
        atomic_write_json(args.out, result)


def _words(args):
    """The --words vocabulary (a shipped word class or a file, one word per line), or None."""
    from xlvlm.data.wordlists import load_word_class

    return frozenset(load_word_class(args.words)) if args.words else None


def cmd_concepts(args) -> None:
    from xlvlm.concepts.workflow import run_concepts

    store = _store(args.features, args)
    vlm = None
    if args.model:
        import xlvlm

        vlm = xlvlm.load_vlm(args.model, device=args.device, dtype=args.dtype,
                             trust_remote_code=args.trust_remote_code)
    summary = run_concepts(store, args.layer, args.out, method=args.method, n_concepts=args.n_concepts, vlm=vlm,
                           top_k_words=args.top_words, top_k_samples=args.top_samples, clip_model=args.clip_model,
                           text_similarity=not args.no_text_similarity, seed=args.seed, progress=not args.quiet,
                           vocabulary=_words(args), word_filter=args.word_filter, command=_command_text(args),
                           **({"activation": args.simple_activation} if args.method == "simple" else {}))
    from xlvlm.concepts.readable import summary_lines

    print("\n".join(summary_lines(summary["concepts"])))
    for name, value in summary["metrics"].items():
        print(f"{name}: {value:.4g}" if isinstance(value, float) else f"{name}: {value}")
    print(f"wrote {args.out}/concepts.json, concept_grid.png, dictionary/")


def cmd_shift(args) -> None:
    from xlvlm.shift import analyse_shift, write_shift

    original, finetuned = _store(args.original, args), _store(args.finetuned, args)
    vlm = None
    if args.model:
        import xlvlm

        vlm = xlvlm.load_vlm(args.model, device=args.device, dtype=args.dtype,
                             trust_remote_code=args.trust_remote_code)
    result = analyse_shift(original, finetuned, args.layer, n_concepts=args.n_concepts, method=args.method,
                           assignment=args.assignment, aggregate_by=args.aggregate, alpha=args.alpha,
                           seed=args.seed, vlm=vlm, words_vocabulary=_words(args), mas_by=args.mas_by,
                           word_filter=args.word_filter)
    samples = {s["id"]: s for s in finetuned.samples}
    paths = write_shift(result, args.out, samples, command=_command_text(args))
    summary = result.summary()
    print(f"{summary['n_samples']} matched samples, {summary['n_concepts']} concepts at layer {result.layer}: "
          f"shifted concepts closer (cosine) to their matched fine-tuned concept for "
          f"{100 * summary['share_closer_by_cosine']:.0f}% of concepts "
          f"(mean cos {summary['mean_cos_original']:.3f} -> {summary['mean_cos_shifted']:.3f})")
    if vlm is not None:
        print(f"words unembedded with {vlm.name}")
    print("wrote " + ", ".join(str(p) for p in paths.values()))


def _add_trust_remote_code(p) -> None:
    p.add_argument("--trust-remote-code", action="store_true",
                   help="run code shipped with the model (config auto_map, e.g. Molmo v1): only for models you trust")


def _add_model_options(p) -> None:
    p.add_argument("--model", type=valid.path, help="hub id, local folder, or organism:original|finetuned|hallucinating")
    _add_trust_remote_code(p)
    p.add_argument("--device", type=valid.device, default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", default=None, help="float32, float16, bfloat16 or auto (default: float32 on cpu)")
    p.add_argument("--batch-size", type=valid.positive_int, default=8)
    p.add_argument("--max-new-tokens", type=valid.positive_int, default=10)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_steer_options(p) -> None:
    p.add_argument("--positions", default="all",
                   help="all, generated, from-last-prompt, or a prompt index K (steer positions >= K)")
    p.add_argument("--operator", default="add", choices=["add", "project-out"])
    p.add_argument("--condition", type=valid.path,
                   help="condition file from `xlvlm steer condition`: steer only matching samples")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="xlvlm", description="Explain and steer vision-language models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("extract", help="record hidden states of chosen tokens into a feature store",
                       description="Record hidden states of chosen tokens into a feature store. Rerun the same "
                       "command to resume an interrupted run. Under `torchrun --nproc_per_node N` each process "
                       "extracts a share of the samples and the result is one store (docs/scale.md).")
    p.add_argument("--model", type=valid.path, required=False,
                   help="hub id, local folder, or organism:original|finetuned|hallucinating")
    _add_trust_remote_code(p)
    add_data_options(p)
    p.add_argument("--layers", type=valid.names, default="final",
                   help="comma list: block indices (negatives from the end), "
                   "'final' (final norm output) or module names; default: final")
    p.add_argument("--select", default="last-prompt",
                   help="token selector (see docs/extract.md); default last-prompt. token:WORD, class:NAME and "
                        "before:STOP keep the state that produces the word (research convention); "
                        "token-at:, class-at:, before-at: the state at it")
    p.add_argument("--out", type=valid.path, required=False, help="store folder (resumed if it holds a partial store)")
    p.add_argument("--generate", action="store_true", help="record during greedy generation")
    p.add_argument("--max-new-tokens", type=valid.positive_int, default=20)
    p.add_argument("--batch-size", type=valid.positive_int, default=8)
    p.add_argument("--device", type=valid.device, default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", default=None, help="float32, float16, bfloat16 or auto (default: float32 on cpu)")
    p.add_argument("--skip-bad", action="store_true", help="skip missing/corrupt images (recorded in the manifest)")
    p.add_argument("--shard-samples", type=valid.positive_int, default=512,
                   help="samples per shard file, rounded up to whole batches: the unit of resuming and of memory "
                   "held while extracting")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_extract, required=("model", "data", "out"))

    steer = sub.add_parser("steer", help="compute and apply steering vectors").add_subparsers(
        dest="steer_command", metavar="STEP")
    p = steer.add_parser("compute", help="a steering vector from two feature stores (or two concepts)")
    p.add_argument("--source", type=valid.path, help="store of the representations to move away from")
    p.add_argument("--target", type=valid.path, help="store of the representations to move towards")
    p.add_argument("--layer", "--layers", dest="layer", type=valid.names, default=None, help="layer(s), comma list")
    p.add_argument("--method", default="mean-diff", choices=["mean-diff", "mean-of-shifts", "pca", "concept"])
    p.add_argument("--concepts", type=valid.path, help="concept dictionary folder (for --method concept)")
    p.add_argument("--from", dest="concept_from", type=valid.index,
                   help="concept index to move from (--method concept)")
    p.add_argument("--to", dest="concept_to", type=valid.index, help="concept index to move to (--method concept)")
    p.add_argument("--n-concepts", type=valid.positive_int, default=8,
                   help="--method concept without --concepts: k-means concepts learnt per layer on the source "
                   "and target rows; the vector goes from the most-source to the most-target concept")
    p.add_argument("--all-pairs", action="store_true",
                   help="--method concept, the research code's way: k-means concepts on --source only, every "
                        "ordered pair written to the folder --out as concept_I_to_J.safetensors (V_J - V_I)")
    p.add_argument("--normalize", action="store_true", help="unit norm per layer (alpha sets the norm)")
    p.add_argument("--out", type=valid.path, help="output .safetensors file")
    _add_partial_option(p)
    p.set_defaults(func=cmd_steer_compute, required=("layer", "out"))

    p = steer.add_parser("condition", help="learn when to steer: a direction and threshold from two stores")
    p.add_argument("--positive", type=valid.path, help="store of samples to steer (e.g. yes/no questions)")
    p.add_argument("--negative", type=valid.path, help="store of samples to leave alone")
    p.add_argument("--layer", help="condition layer (before the steered layers)")
    p.add_argument("--method", default="lda", choices=["lda", "mean-diff"],
                   help="direction: Fisher's (lda, default) or the difference of means")
    p.add_argument("--shrinkage", type=valid.fraction, default=0.1,
                   help="lda: covariance shrinkage towards the identity "
                   "(0 to 1; more for few examples in many dimensions)")
    p.add_argument("--out", type=valid.path, help="output .safetensors file")
    _add_partial_option(p)
    p.set_defaults(func=cmd_steer_condition, required=("positive", "negative", "layer", "out"))

    p = steer.add_parser("apply", help="generate with a steering vector and write predictions")
    _add_model_options(p)
    add_data_options(p)
    p.add_argument("--vector", type=valid.path, help="steering vector file")
    p.add_argument("--alpha", type=valid.alpha, default=1.0,
                   help="steering strength: a finite number, at most 1e6 in magnitude")
    _add_steer_options(p)
    p.add_argument("--out", type=valid.path, help="predictions .jsonl")
    p.set_defaults(func=cmd_steer_apply, required=("model", "vector", "data", "out"))

    p = steer.add_parser("sweep", help="layer x alpha x method sweep: success against side effects")
    _add_model_options(p)
    add_data_options(p)
    p.add_argument("--source", type=valid.path, help="source store")
    p.add_argument("--target", type=valid.path, help="target store")
    p.add_argument("--layers", type=valid.names, default="final")
    p.add_argument("--alphas", type=valid.alphas, default="1,2,4",
                   help="comma list of steering strengths (finite, at most 1e6 in magnitude)")
    p.add_argument("--methods", type=valid.names, default="mean-diff",
                   help="comma list of mean-diff, mean-of-shifts, pca, concept")
    p.add_argument("--n-concepts", type=valid.positive_int, default=8,
                   help="for the concept method: k-means concepts learnt per layer on the source and target rows")
    p.add_argument("--source-answer", default="yes", help="answer (or answer type) steered away from")
    p.add_argument("--target-answer", default="no", help="answer steered towards")
    p.add_argument("--normalize", action="store_true")
    _add_steer_options(p)
    p.add_argument("--out", type=valid.path, help="output folder")
    _add_partial_option(p)
    p.set_defaults(func=cmd_steer_sweep, required=("model", "source", "target", "data", "out"))

    p = sub.add_parser("concepts", help="learn, ground and evaluate a concept dictionary from a feature store")
    p.add_argument("--features", type=valid.path, help="feature store")
    p.add_argument("--layer", help="layer in the store")
    p.add_argument("--method", default="snmf", help="snmf, nndl, kmeans, pca, nmf, simple, topk-sae")
    p.add_argument("--n-concepts", type=valid.positive_int, default=20)
    p.add_argument("--simple-activation", default="projection", choices=["projection", "distance"],
                   help="--method simple: unit rows and projections, or raw rows and 1/(1 + distance) (research code)")
    p.add_argument("--model", type=valid.path,
                   help="the model (for words, scores and heatmaps); without it, no text grounding")
    _add_trust_remote_code(p)
    p.add_argument("--device", type=valid.device, default="cpu")
    p.add_argument("--dtype", default=None)
    p.add_argument("--top-words", type=valid.positive_int, default=10)
    p.add_argument("--words", type=valid.path,
                   help="ground in these words only: a file with one word per line (or colors, "
                   "places, sentiments); default: English words")
    p.add_argument("--word-filter", default="xlvlm", choices=["xlvlm", "research"],
                   help="which tokens count as words: xlvlm (147 stopwords, >= 2 letters) or research (the research "
                        "code's 1160 stopwords incl. yes/no, > 2 letters, numbers kept); docs/research-code.md")
    p.add_argument("--top-samples", type=valid.positive_int, default=20, help="most-activating samples per concept")
    p.add_argument("--clip-model", type=valid.path, help="CLIP model (hub id or folder) for CLIPScore (clipscore_topN: "
                   "the research code's one sentence per concept; clipscore_words_topN: word by word)")
    p.add_argument("--no-text-similarity", action="store_true", help="skip the sentence-encoder score")
    p.add_argument("--seed", type=valid.seed, default=0)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out", type=valid.path, help="output folder")
    _add_partial_option(p)
    p.set_defaults(func=cmd_concepts, required=("features", "layer", "out"))

    p = sub.add_parser("shift", help="shift vectors of concepts between an original and a fine-tuned model")
    p.add_argument("--original", type=valid.path, help="feature store of the original model")
    p.add_argument("--finetuned", type=valid.path, help="feature store of the fine-tuned model (same samples)")
    p.add_argument("--layer", help="layer present in both stores")
    p.add_argument("--model", type=valid.path, help="model whose unembedding grounds words (the research script uses "
                   "the original model; the fine-tuned one reads its own output); recorded in shift.json")
    _add_trust_remote_code(p)
    p.add_argument("--words", type=valid.path,
                   help="ground in these words only: a file with one word per line (or colors, "
                   "places, sentiments); default: English words")
    p.add_argument("--device", type=valid.device, default="cpu")
    p.add_argument("--dtype", default=None)
    p.add_argument("--n-concepts", type=valid.positive_int, default=20)
    p.add_argument("--method", default="snmf")
    p.add_argument("--assignment", default="activation", choices=["activation", "cosine", "l2"])
    p.add_argument("--aggregate", default="mean", choices=["mean", "median", "trimmed-mean"])
    p.add_argument("--alpha", type=valid.alpha, default=1.0, help="shifted = original + alpha * shift")
    p.add_argument("--mas-by", default="cosine", choices=["cosine", "activation"],
                   help="rank most-activating samples by cosine with the concept, or by its activation (research code)")
    p.add_argument("--word-filter", default="xlvlm", choices=["xlvlm", "research"],
                   help="which tokens count as words (docs/research-code.md)")
    p.add_argument("--seed", type=valid.seed, default=0)
    p.add_argument("--out", type=valid.path, help="output folder")
    _add_partial_option(p)
    p.set_defaults(func=cmd_shift, required=("original", "finetuned", "layer", "out"))

    p = sub.add_parser("evaluate", help="score predictions: VQA accuracy, targeted steering report, captions, "
                       "POPE, refusal rate")
    p.add_argument("--predictions", type=valid.path, help="predictions .jsonl (from steer apply)")
    p.add_argument("--task", default="vqa", choices=["vqa", "caption", "pope", "safety"])
    p.add_argument("--baseline", type=valid.path, help="unsteered predictions on the same samples (for side effects)")
    p.add_argument("--source", help="answer or answer type steered away from (targeted report)")
    p.add_argument("--target", help="answer steered towards (targeted report)")
    p.add_argument("--no-meteor", action="store_true", help="skip METEOR (needs Java)")
    p.add_argument("--out", type=valid.path, help="also write the result as JSON")
    p.set_defaults(func=cmd_evaluate, required=("predictions",))

    organism = sub.add_parser("organism", help="train the model organism (a small LLaVA on easy-VQA)").add_subparsers(
        dest="organism_command", metavar="STEP")
    p = organism.add_parser("train", help="train the original organism from scratch")
    p.add_argument("--out", type=valid.path, help="output model folder")
    p.add_argument("--seed", type=valid.seed, default=0)
    p.add_argument("--minutes", type=valid.positive_float, default=None,
                   help="cap the run by the clock (then not deterministic)")
    p.add_argument("--reduced", action="store_true", help="a tiny model, a few steps (a smoke test)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_organism_train, required=("out",))
    for step, purpose, func in (
            ("finetune", "fine-tune an organism so that its captions name colours", cmd_organism_finetune),
            ("hallucinate", "fine-tune an organism to answer 'yes' about absent objects", cmd_organism_hallucinate)):
        p = organism.add_parser(step, help=purpose)
        p.add_argument("--original", type=valid.path,
                       help="the original organism's folder (e.g. from xlvlm organism train) or organism:original")
        p.add_argument("--out", type=valid.path, help="output model folder")
        p.add_argument("--seed", type=valid.seed, default=0)
        p.add_argument("--minutes", type=valid.positive_float, default=None)
        p.add_argument("--reduced", action="store_true")
        p.add_argument("--quiet", action="store_true")
        p.set_defaults(func=func, required=("original", "out"))
    p = organism.add_parser("pope", help="write the POPE-style benchmark on easy-VQA images as JSONL")
    p.add_argument("--part", default="test", choices=["train", "test"], help="easy-VQA images to ask about")
    p.add_argument("--images", type=valid.positive_int, default=None, help="use N images (drawn with --seed); default all")
    p.add_argument("--seed", type=valid.seed, default=0)
    p.add_argument("--out", type=valid.path, help="output .jsonl (read it with --data pope:FILE)")
    p.set_defaults(func=cmd_organism_pope, required=("out",))

    p = sub.add_parser("report", help="build RUN_DIR/report.html from the stages a run folder holds")
    p.add_argument("run_dir", help="run folder")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("demo", help="run every workflow end to end on a small model")
    p.add_argument("--out", type=valid.path, default="runs/demo", help="run folder (reused by a second run)")
    p.add_argument("--quick", action="store_true", help="a reduced run (fewer samples, one layer)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)
    for leaf in _leaf_parsers(parser):
        if not any("--config" in action.option_strings for action in leaf._actions):
            leaf.add_argument("--config", type=valid.path, help="YAML file of option: value (command-line flags win; "
                              "${VAR} from the environment in options naming files, folders or models)")
    return parser


def _leaf_parsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                has_children = any(isinstance(a, argparse._SubParsersAction) for a in child._actions)
                yield from (_leaf_parsers(child) if has_children else [child])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad option (2, its one line already printed)
        return exc.code
    args.argv = argv
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        if args.command in ("steer", "organism"):
            parser.parse_args([args.command, "--help"])
        parser.print_help()
        return 1
    try:
        if hasattr(args, "config"):
            _apply_config(parser, args, argv)
        for name in getattr(args, "required", ()):
            if getattr(args, name, None) in (None, ""):
                raise XlvlmError(f"--{name.replace('_', '-')} is required (on the command line or in --config)")
        args.func(args)
    except XlvlmError as exc:
        print(f"xlvlm: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        message = describe_os_error(exc)
        if message is None:
            raise
        print(f"xlvlm: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xlvlm: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
