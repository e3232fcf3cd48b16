"""``xlvlm shift``: shift vectors of concepts between an original and a fine-tuned model."""

from __future__ import annotations

from xlvlm.cli import options
from xlvlm.cli import validate as valid
from xlvlm.concepts.registry import METHODS as CONCEPT_METHODS
from xlvlm.shift.registry import AGGREGATES, ASSIGNMENTS, CONCEPT_SCALES, MAS_RANKINGS


def register(sub) -> None:
    p = sub.add_parser("shift", help="shift vectors of concepts between an original and a fine-tuned model")
    p.add_argument("--original", type=valid.path, help="feature store of the original model")
    p.add_argument("--finetuned", type=valid.path, help="feature store of the fine-tuned model (same samples)")
    p.add_argument("--layer", help="layer present in both stores")
    options.add_model(p, help="model whose unembedding grounds words (the research script uses the original model; "
                      "the fine-tuned one reads its own output); recorded in result.json")
    options.add_words(p)
    options.add_device(p)
    p.add_argument("--n-concepts", type=valid.positive_int, default=20)
    p.add_argument("--method", default="snmf", help=options.choice_list(CONCEPT_METHODS))
    p.add_argument("--assignment", default="activation", choices=ASSIGNMENTS)
    p.add_argument("--aggregate", default="mean", choices=AGGREGATES)
    p.add_argument("--alpha", type=valid.alpha, default=1.0, help="shifted = original + alpha * shift")
    p.add_argument("--mas-by", default="cosine", choices=MAS_RANKINGS,
                   help="rank most-activating samples by cosine with the concept, or by its activation (research code)")
    options.add_word_filter(p, help="which tokens count as words (docs/research-code.md)")
    p.add_argument("--concept-scale", default="data", choices=CONCEPT_SCALES,
                   help="compare and shift concepts at the data's scale, or as the method returns them (research code)")
    p.add_argument("--aggregate-sides", action="store_true",
                   help="shift = aggregate(fine-tuned rows) - aggregate(original rows) per concept, as the research "
                        "code (default: the aggregate of per-sample differences; the same for the mean)")
    options.add_seed(p)
    options.add_out(p, "output folder")
    options.add_overwrite(p)
    options.add_partial(p)
    p.set_defaults(func=run, required=("original", "finetuned", "layer", "out"))


def run(args) -> None:
    from xlvlm.shift import ShiftSettings, analyse_shift, write_shift

    options.refuse_existing_out(args)
    original, finetuned = options.open_store(args.original, args), options.open_store(args.finetuned, args)
    vlm, words = options.model_and_words(args)
    settings = ShiftSettings(n_concepts=args.n_concepts, method=args.method, seed=args.seed,
                             assignment=args.assignment, aggregate_by=args.aggregate, alpha=args.alpha,
                             mas_by=args.mas_by, words_vocabulary=words,
                             word_filter=args.word_filter, concept_scale=args.concept_scale,
                             aggregate_sides=args.aggregate_sides)
    result = analyse_shift(original, finetuned, args.layer, settings, vlm=vlm)
    samples = {s["id"]: s for s in finetuned.samples}
    paths = write_shift(result, args.out, samples, command=options.command_text(args))
    summary = result.summary()
    print(f"{summary['n_samples']} matched samples, {summary['n_concepts']} concepts at layer {result.layer}: "
          f"shifted concepts closer (cosine) to their matched fine-tuned concept for "
          f"{100 * summary['share_closer_by_cosine']:.0f}% of concepts "
          f"(mean cos {summary['mean_cos_original']:.3f} -> {summary['mean_cos_shifted']:.3f})")
    if vlm is not None:
        print(f"words unembedded with {vlm.name}")
    print("wrote " + ", ".join(str(p) for p in paths.values()))
