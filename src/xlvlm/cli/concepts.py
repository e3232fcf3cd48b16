"""``xlvlm concepts``: learn, ground and evaluate a concept dictionary from a feature store."""

from __future__ import annotations

from xlvlm.cli import options
from xlvlm.cli import validate as valid
from xlvlm.concepts.registry import METHODS, SIMPLE_ACTIVATIONS
from xlvlm.errors import XlvlmError


def register(sub) -> None:
    p = sub.add_parser("concepts", help="learn, ground and evaluate a concept dictionary from a feature store")
    p.add_argument("--features", type=valid.path, help="feature store")
    p.add_argument("--layer", help="layer in the store (with --dictionary: by default the one the SAE reads)")
    p.add_argument("--method", default="snmf", help=options.choice_list(METHODS))
    p.add_argument("--n-concepts", type=valid.positive_int, default=20,
                   help="concepts to learn; with --dictionary SAE: its features to ground (the most activated)")
    p.add_argument("--dictionary", type=valid.path,
                   help="ground this dictionary instead of learning one: a saved one (its folder) or a pretrained SAE "
                        "(SAELens folder, Gemma Scope params.npz, Gemma Scope 2 params.safetensors)")
    p.add_argument("--sae-features", type=valid.indices, help="with --dictionary SAE: ground these features (comma list)")
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
    p.set_defaults(func=run, required=("features", "out"))


def run(args) -> None:
    from xlvlm.concepts.workflow import ConceptSettings, run_concepts

    if args.layer in (None, "") and args.dictionary is None:
        raise XlvlmError("--layer is required (on the command line or in --config)")
    if args.sae_features is not None and args.dictionary is None:
        raise XlvlmError("--sae-features picks features of a pretrained SAE: give it with --dictionary")
    options.refuse_existing_out(args)
    store = options.open_store(args.features, args)
    vlm, words = options.model_and_words(args)
    settings = ConceptSettings(method=args.method, n_concepts=args.n_concepts, seed=args.seed,
                               method_options={"activation": args.simple_activation} if args.method == "simple" else {},
                               top_k_words=args.top_words, top_k_samples=args.top_samples,
                               vocabulary=words, word_filter=args.word_filter,
                               clip_model=args.clip_model, text_similarity=not args.no_text_similarity,
                               dictionary=args.dictionary, features=args.sae_features)
    summary = run_concepts(store, args.layer or None, args.out, settings, vlm=vlm,
                           progress=not args.quiet, command=options.command_text(args))
    from xlvlm.concepts.readable import summary_lines

    print("\n".join(summary_lines(summary["concepts"], grounded=vlm is not None)))
    for name, value in summary["metrics"].items():
        print(f"{name}: {value:.4g}" if isinstance(value, float) else f"{name}: {value}")
    print(f"wrote {args.out}/result.json, concept_grid.png, dictionary/")
