"""``xlvlm shift``: shift vectors of concepts between an original and a fine-tuned model."""

from __future__ import annotations

from xlvlm.choices import CONCEPT_METHODS, SHIFT_AGGREGATES, SHIFT_ASSIGNMENTS, SHIFT_MAS_RANKINGS
from xlvlm.cli import options
from xlvlm.cli import validate as valid


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
    p.add_argument("--assignment", default="activation", choices=SHIFT_ASSIGNMENTS)
    p.add_argument("--aggregate", default="mean", choices=SHIFT_AGGREGATES)
    p.add_argument("--alpha", type=valid.alpha, default=1.0, help="shifted = original + alpha * shift")
    p.add_argument("--mas-by", default="cosine", choices=SHIFT_MAS_RANKINGS,
                   help="rank most-activating samples by cosine with the concept, or by its activation (research code)")
    options.add_word_filter(p, help="which tokens count as words (docs/research-code.md)")
    options.add_seed(p)
    options.add_out(p, "output folder")
    options.add_overwrite(p)
    options.add_partial(p)
    p.set_defaults(func=run, required=("original", "finetuned", "layer", "out"))


def run(args) -> None:
    from xlvlm.shift import analyse_shift, write_shift

    options.refuse_existing_out(args)
    original, finetuned = options.open_store(args.original, args), options.open_store(args.finetuned, args)
    vlm = options.optional_model(args)
    result = analyse_shift(original, finetuned, args.layer, n_concepts=args.n_concepts, method=args.method,
                           assignment=args.assignment, aggregate_by=args.aggregate, alpha=args.alpha,
                           seed=args.seed, vlm=vlm, words_vocabulary=options.load_words(args), mas_by=args.mas_by,
                           word_filter=args.word_filter)
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
