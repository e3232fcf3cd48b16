"""``xlvlm concepts``: learn, ground and evaluate a concept dictionary from a feature store."""

from __future__ import annotations

from xlvlm.choices import CONCEPT_METHODS, SIMPLE_ACTIVATIONS
from xlvlm.cli import options
from xlvlm.cli import validate as valid


def register(sub) -> None:
    p = sub.add_parser("concepts", help="learn, ground and evaluate a concept dictionary from a feature store")
    p.add_argument("--features", type=valid.path, help="feature store")
    p.add_argument("--layer", help="layer in the store")
    p.add_argument("--method", default="snmf", help=options.choice_list(CONCEPT_METHODS))
    p.add_argument("--n-concepts", type=valid.positive_int, default=20)
    p.add_argument("--simple-activation", default="projection", choices=SIMPLE_ACTIVATIONS,
                   help="--method simple: unit rows and projections, or raw rows and 1/(1 + distance) (research code)")
    options.add_model(p, help="the model (for words, scores and heatmaps); without it, no text grounding")
    options.add_device(p)
    p.add_argument("--top-words", type=valid.positive_int, default=10)
    options.add_words(p)
    options.add_word_filter(p, help="which tokens count as words: xlvlm (147 stopwords, >= 2 letters) or research "
                            "(the research code's 1160 stopwords incl. yes/no, > 2 letters, numbers kept); "
                            "docs/research-code.md")
    p.add_argument("--top-samples", type=valid.positive_int, default=20, help="most-activating samples per concept")
    p.add_argument("--clip-model", type=valid.path, help="CLIP model (hub id or folder) for CLIPScore (clipscore_topN: "
                   "the research code's one sentence per concept; clipscore_words_topN: word by word)")
    p.add_argument("--no-text-similarity", action="store_true", help="skip the sentence-encoder score")
    options.add_seed(p)
    options.add_quiet(p)
    options.add_out(p, "output folder")
    options.add_overwrite(p)
    options.add_partial(p)
    p.set_defaults(func=run, required=("features", "layer", "out"))


def run(args) -> None:
    from xlvlm.concepts.workflow import run_concepts

    options.refuse_existing_out(args)
    store = options.open_store(args.features, args)
    summary = run_concepts(store, args.layer, args.out, method=args.method, n_concepts=args.n_concepts,
                           vlm=options.optional_model(args), top_k_words=args.top_words,
                           top_k_samples=args.top_samples, clip_model=args.clip_model,
                           text_similarity=not args.no_text_similarity, seed=args.seed, progress=not args.quiet,
                           vocabulary=options.load_words(args), word_filter=args.word_filter,
                           command=options.command_text(args),
                           **({"activation": args.simple_activation} if args.method == "simple" else {}))
    from xlvlm.concepts.readable import summary_lines

    print("\n".join(summary_lines(summary["concepts"])))
    for name, value in summary["metrics"].items():
        print(f"{name}: {value:.4g}" if isinstance(value, float) else f"{name}: {value}")
    print(f"wrote {args.out}/result.json, concept_grid.png, dictionary/")
