"""``xlvlm steer compute|condition|learn|apply|sweep``: steering vectors, when to steer, learned
steering, and their effect."""

from __future__ import annotations

from xlvlm.cli import options, steer_calibrate
from xlvlm.cli import validate as valid
from xlvlm.errors import XlvlmError, describe_os_error
from xlvlm.steer.registry import CONDITION_METHODS, METHODS, OPERATORS, POSITION_RULES

N_CONCEPTS_HELP = "k-means concepts learnt per layer on the source and target rows"


def register(sub) -> None:
    steer = sub.add_parser("steer", help="compute and apply steering vectors").add_subparsers(
        dest="steer_command", metavar="STEP")
    _register_compute(steer)
    _register_condition(steer)
    _register_learn(steer)
    _register_apply(steer)
    _register_sweep(steer)
    steer_calibrate.register(steer, _add_steering, _add_generating_model)


def _add_steering(p) -> None:
    """How a vector is applied: positions, operator and an optional condition."""
    p.add_argument("--positions", default="all",
                   help=f"{options.choice_list(POSITION_RULES)}, or a prompt index K (steer positions >= K)")
    p.add_argument("--operator", default="add", choices=tuple(OPERATORS))
    p.add_argument("--condition", type=valid.path,
                   help="condition file from `xlvlm steer condition`: steer only matching samples")


def _add_generating_model(p) -> None:
    options.add_model(p)
    options.add_device(p)
    options.add_generation(p, max_new_tokens=10)
    options.add_quiet(p)


def _condition(args):
    if not args.condition:
        return None
    from xlvlm.steer.condition import load_condition

    return load_condition(args.condition)


# ---- compute -------------------------------------------------------------------------------------
def _register_compute(steer) -> None:
    p = steer.add_parser("compute", help="a steering vector from two feature stores (or two concepts)")
    p.add_argument("--source", type=valid.path, help="store of the representations to move away from")
    p.add_argument("--target", type=valid.path, help="store of the representations to move towards")
    p.add_argument("--layer", "--layers", dest="layer", type=valid.names, default=None, help="layer(s), comma list")
    p.add_argument("--method", default="mean-diff", choices=METHODS)
    p.add_argument("--concepts", type=valid.path, help="concept dictionary folder or pretrained SAE (SAELens folder, "
                   "Gemma Scope params file) for --method concept")
    p.add_argument("--from", dest="concept_from", type=valid.index,
                   help="concept index to move from (--method concept); without it, steer along --to alone")
    p.add_argument("--to", dest="concept_to", type=valid.index, help="concept index to move to (--method concept)")
    p.add_argument("--n-concepts", type=valid.positive_int, default=8,
                   help=f"--method concept without --concepts: {N_CONCEPTS_HELP}; the vector goes from the "
                   "most-source to the most-target concept")
    p.add_argument("--all-pairs", action="store_true",
                   help="--method concept, the research code's way: k-means concepts on --source only, every "
                        "ordered pair written to the folder --out as concept_I_to_J.safetensors (V_J - V_I)")
    p.add_argument("--normalize", action="store_true", help="unit norm per layer (alpha sets the norm)")
    p.add_argument("--per-sample", action="store_true",
                   help="P2S: one vector per sample, target_i - source_i for every sample id in both stores "
                        "(for `steer learn --per-sample` and the oracle `steer apply --per-sample`)")
    options.add_out(p, "output .safetensors file")
    options.add_overwrite(p)
    options.add_partial(p)
    p.set_defaults(func=run_compute, required=("layer", "out"))


def run_compute(args) -> None:
    options.refuse_existing_out(args)
    from xlvlm.steer import SteeringVector

    layers = options.names(args.layer)
    if args.per_sample:
        _write_per_sample(args, layers)
        return
    if args.all_pairs:
        _write_all_pairs(args, layers)
        return
    if args.method == "concept" and args.concepts:
        from xlvlm.concepts.given_dictionary import open_dictionary
        from xlvlm.layerkeys import layer_key

        if args.concept_to is None:
            raise XlvlmError("--method concept --concepts DIR needs --to J (and --from I; without it: along J alone)")
        dictionary = open_dictionary(args.concepts)
        own = getattr(dictionary, "layer", None)  # a pretrained SAE's layer
        if own is not None and layer_key(layers[0]) != own:
            raise XlvlmError(f"--layer {layers[0]}: the SAE reads layer {own} ({dictionary.hook_name}); give --layer {own}")
        vector = SteeringVector.from_concepts(dictionary, args.concept_from, args.concept_to, layers[0])
    else:
        if args.concept_from is not None or args.concept_to is not None:
            raise XlvlmError("--from/--to pick concepts of a saved dictionary: give --method concept --concepts DIR")
        if not args.source or not args.target:
            extra = " (or --concepts DIR --from I --to J)" if args.method == "concept" else ""
            raise XlvlmError(f"--method {args.method} needs --source STORE and --target STORE{extra}")
        settings = {"n_concepts": args.n_concepts} if args.method == "concept" else {}
        vector = SteeringVector.compute(options.open_store(args.source, args), options.open_store(args.target, args),
                                        layers, method=args.method, **settings)
    if args.normalize:
        vector = vector.normalized()
    vector.save(args.out, overwrite=True)  # --out was checked before any work
    print(f"wrote {args.out}: {vector}")


def _write_all_pairs(args, layers) -> None:
    from pathlib import Path

    from xlvlm.steer import SteeringVector

    if args.method != "concept" or not args.source or args.concepts or len(layers) != 1:
        raise XlvlmError("--all-pairs needs --method concept, --source STORE and one --layer (no --concepts)")
    pairs = SteeringVector.concept_pairs(options.open_store(args.source, args), layers[0], n_concepts=args.n_concepts)
    for (i, j), vector in pairs.items():
        vector = vector.normalized() if args.normalize else vector
        vector.save(Path(args.out) / f"concept_{i}_to_{j}.safetensors", overwrite=True)
    print(f"wrote {len(pairs)} vectors (concept_I_to_J = V_J - V_I) into {args.out}")


def _write_per_sample(args, layers) -> None:
    from xlvlm.steer import PerSampleSteering

    if args.method != "mean-diff" or args.all_pairs or args.normalize or args.concepts \
            or args.concept_from is not None or args.concept_to is not None:
        raise XlvlmError("--per-sample takes --source, --target, --layer and --out only (no --method, --all-pairs, "
                         "--normalize or concepts)")
    if not args.source or not args.target:
        raise XlvlmError("--per-sample needs --source STORE and --target STORE (the same samples in both)")
    vectors = PerSampleSteering.from_stores(options.open_store(args.source, args),
                                            options.open_store(args.target, args), layers)
    vectors.save(args.out, overwrite=True)
    print(f"wrote {args.out}: {vectors}")


# ---- condition -----------------------------------------------------------------------------------
def _register_condition(steer) -> None:
    p = steer.add_parser("condition", help="learn when to steer: a direction and threshold from two stores")
    p.add_argument("--positive", type=valid.path, help="store of samples to steer (e.g. yes/no questions)")
    p.add_argument("--negative", type=valid.path, help="store of samples to leave alone")
    p.add_argument("--layer", help="condition layer (before the steered layers)")
    p.add_argument("--method", default="lda", choices=CONDITION_METHODS,
                   help="direction: Fisher's (lda, default) or the difference of means")
    p.add_argument("--shrinkage", type=valid.fraction, default=0.1,
                   help="lda: covariance shrinkage towards the identity "
                   "(0 to 1; more for few examples in many dimensions)")
    options.add_out(p, "output .safetensors file")
    options.add_overwrite(p)
    options.add_partial(p)
    p.set_defaults(func=run_condition, required=("positive", "negative", "layer", "out"))


def run_condition(args) -> None:
    options.refuse_existing_out(args)
    from xlvlm.steer.condition import Condition, save_condition

    positive, negative = options.open_store(args.positive, args), options.open_store(args.negative, args)
    layer = positive.layer_key(args.layer)
    condition = Condition.learn(positive.features(layer, present_only=True),
                                negative.features(layer, present_only=True), layer, method=args.method,
                                shrinkage=args.shrinkage)
    save_condition(condition, args.out, overwrite=True)
    steer = condition.decide(positive.features(layer, present_only=True)).float().mean()
    keep = 1 - condition.decide(negative.features(layer, present_only=True)).float().mean()
    print(f"wrote {args.out}: layer {layer}, threshold {condition.threshold:.4g}; training accuracy "
          f"{100 * steer:.1f}% of --positive steered, {100 * keep:.1f}% of --negative left alone")


# ---- learn ---------------------------------------------------------------------------------------
def _register_learn(steer) -> None:
    p = steer.add_parser("learn", help="L2S: learn to predict each sample's steering vector from its own state")
    p.add_argument("--context", type=valid.path,
                   help="store of the context states (one row per sample, e.g. --select last-prompt of the question)")
    p.add_argument("--source", type=valid.path, help="store of the representations to move away from (paired by id)")
    p.add_argument("--target", type=valid.path, help="store of the representations to move towards (paired by id)")
    p.add_argument("--per-sample", type=valid.path,
                   help="per-sample vectors of `steer compute --per-sample` (instead of --source/--target)")
    p.add_argument("--layer", help="steering layer: where the vectors are read and added")
    p.add_argument("--context-layer", help="layer of the context state (default: --layer); at or before --layer")
    p.add_argument("--hidden", type=valid.positive_int, default=100, help="width of the network's hidden layer")
    p.add_argument("--epochs", type=valid.positive_int, default=100)
    p.add_argument("--lr", type=valid.positive_float, default=1e-3, help="Adam learning rate (peak)")
    p.add_argument("--batch-size", type=valid.positive_int, default=64, help="training minibatch size")
    p.add_argument("--val-fraction", type=valid.fraction, default=0.1,
                   help="share of the samples held out (chosen by --seed); the best held-out epoch is kept")
    p.add_argument("--cosine-weight", type=valid.fraction, default=0.1,
                   help="weight of the cosine term in the loss (MSE + L1 - w cos)")
    options.add_seed(p)
    p.add_argument("--calibrate", type=valid.path,
                   help="held-out samples (any --data form) to choose alpha on right after training (needs --model); "
                        "the alpha is stored in the file and `steer apply --learned` uses it")
    options.add_model(p)
    options.add_device(p)
    p.add_argument("--max-new-tokens", type=valid.positive_int, default=5, help="--calibrate: tokens generated")
    options.add_quiet(p)
    steer_calibrate.add_calibration_options(p)
    p.add_argument("--image-root", type=valid.path, help="image folder for coco:/vqav2:/pope: data of --calibrate")
    p.add_argument("--annotations", type=valid.path, help="VQAv2 annotations JSON (vqav2: data of --calibrate)")
    options.add_out(p, "output folder (learned.safetensors, result.json, learning_curve.png)")
    options.add_overwrite(p)
    options.add_partial(p)
    # --batch-size is the training minibatch here; calibration generates 8 samples at a time
    p.set_defaults(func=run_learn, required=("context", "layer", "out"), generation_batch_size=8)


def run_learn(args) -> None:
    options.refuse_existing_out(args)
    from xlvlm.steer import LearnedSteering, PerSampleSteering
    from xlvlm.steer.learn_outputs import write_learned

    if bool(args.per_sample) == bool(args.source or args.target):
        raise XlvlmError("give the per-sample vectors as --source STORE --target STORE, or as --per-sample FILE "
                         "(one of the two)")
    if not args.per_sample and not (args.source and args.target):
        raise XlvlmError("--source and --target go together (the same samples in both stores)")
    context = options.open_store(args.context, args)
    if args.per_sample:
        shifts = PerSampleSteering.load(args.per_sample)
        layer = args.layer
    else:
        source, target = options.open_store(args.source, args), options.open_store(args.target, args)
        layer = source.layer_key(args.layer)
        shifts = PerSampleSteering.from_stores(source, target, [layer])
    if args.calibrate and not args.model:
        raise XlvlmError("--calibrate generates with the model: give --model (the model the stores came from)")
    model = LearnedSteering.fit(context, shifts, context_layer=args.context_layer or args.layer, steer_layer=layer,
                                hidden=args.hidden, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                                val_fraction=args.val_fraction, cosine_weight=args.cosine_weight, seed=args.seed,
                                progress=not args.quiet)
    calibration = _calibrate_learned(args, model) if args.calibrate else None
    write_learned(model, args.out, command=options.command_text(args), calibration=calibration)
    report = model.metadata["training"]
    held_out = (f"held-out cosine {report['val_cosine']:.3f} (the fixed mean vector: "
                f"{report['mean_vector_val_cosine']:.3f}) on {report['n_val']} samples"
                if report.get("n_val") else "no held-out samples")
    print(f"wrote {args.out}: context layer {model.context_layer} -> steering layer {model.steer_layer}, trained on "
          f"{report['n_train']} samples in {report['seconds']:.1f} s; {held_out}")


def _calibrate_learned(args, model):
    """Choose alpha for the freshly learnt ``model`` on --calibrate (stamped into its metadata)."""
    from xlvlm.data import load_samples
    from xlvlm.steer.calibrate import calibrate

    samples = load_samples(args.calibrate, **steer_calibrate.reader_options(args))
    control = steer_calibrate.load_control(args)
    vlm = options.load_model(args)
    settings = steer_calibrate.settings_from(args)
    result = calibrate(vlm, {"learned": model}, samples, control, settings, progress=not args.quiet,
                       on={"data": str(args.calibrate), "control": str(args.control) if args.control else None})
    model.metadata["calibration"] = result.stamp()
    print(f"calibrated: {result}")
    return result


# ---- apply ---------------------------------------------------------------------------------------
def _register_apply(steer) -> None:
    p = steer.add_parser("apply", help="generate with a steering vector and write predictions")
    _add_generating_model(p)
    options.add_data(p)
    p.add_argument("--vector", type=valid.path, help="steering vector file")
    p.add_argument("--learned", type=valid.path,
                   help="learned steering (L2S): a folder of `steer learn` or its .safetensors (instead of --vector)")
    p.add_argument("--per-sample", type=valid.path,
                   help="per-sample vectors of `steer compute --per-sample` (P2S oracle: each sample steered with "
                        "its own vector, found by id; instead of --vector)")
    p.add_argument("--alpha", type=valid.alpha, default=None,
                   help="steering strength: a finite number, at most 1e6 in magnitude (default: the alpha the file "
                        "was calibrated at by `steer calibrate` or `steer learn --calibrate`, else 1)")
    steer_calibrate.add_normalize(p)
    _add_steering(p)
    options.add_out(p, "predictions .jsonl")
    options.add_overwrite(p)
    p.set_defaults(func=run_apply, required=("model", "data", "out"))


def _steering_to_apply(args):
    """The one of --vector, --learned, --per-sample given, loaded and checked."""
    given = [name for name in ("vector", "learned", "per_sample") if getattr(args, name)]
    if len(given) != 1:
        raise XlvlmError("give one of --vector FILE, --learned DIR and --per-sample FILE"
                         + (f" (got {', '.join('--' + g.replace('_', '-') for g in given)})" if given else ""))
    from xlvlm.steer import LearnedSteering, PerSampleSteering, SteeringVector

    loader = {"vector": SteeringVector, "learned": LearnedSteering, "per_sample": PerSampleSteering}[given[0]]
    return loader.load(getattr(args, given[0]))


def run_apply(args) -> None:
    from pathlib import Path

    from xlvlm.data.jsonl import JsonlAppender
    from xlvlm.io import refuse_existing_output
    from xlvlm.steer.apply import parse_positions
    from xlvlm.steer.run import predict

    if Path(args.out).is_dir():
        raise XlvlmError(f"--out {args.out}: a folder; name the predictions file (.jsonl) to write")
    refuse_existing_output(args.out, overwrite=args.overwrite)
    parse_positions(args.positions)
    vector = _steering_to_apply(args)
    if args.alpha is None:
        args.alpha = calibrated_alpha(vector)
    condition = _condition(args)
    samples = options.load_data(args)
    # Predictions are written as they come (OUT.partial, renamed to OUT at the end): an odd --out
    # fails before the model loads, and a full disk late in the run keeps what was generated.
    with JsonlAppender(args.out) as out:
        vlm = options.load_model(args)
        vector = steer_calibrate.scaled(args, vector, vlm, samples)
        try:
            records = predict(vlm, samples, vector, alpha=args.alpha, positions=args.positions,
                              operator=args.operator, condition=condition, max_new_tokens=args.max_new_tokens,
                              batch_size=args.batch_size, progress=not args.quiet, on_batch=out.write)
            out.commit()
        except OSError as exc:
            if describe_os_error(exc) is None:
                raise
            raise XlvlmError(f"{describe_os_error(exc, out.partial)}; the {out.count} predictions written before "
                             f"are in {out.partial} ({args.out} is unchanged)") from None
        except XlvlmError as exc:  # found while generating (nothing steered, a vector past the dtype)
            if not out.count:
                raise
            raise XlvlmError(f"{exc} (the {out.count} predictions made are in {out.partial}; {args.out} is "
                             f"unchanged)") from None
    print(f"wrote {args.out}: {len(records)} predictions (alpha {args.alpha:g}, {vector})")


def calibrated_alpha(steering) -> float:
    """The alpha a steering file was calibrated at (its metadata["calibration"]), else 1."""
    stamp = getattr(steering, "metadata", {}).get("calibration")
    alpha = stamp.get("alpha") if isinstance(stamp, dict) else None
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not abs(alpha) <= valid.MAX_ALPHA:
        return 1.0
    print(f"alpha {alpha:g}: calibrated on {stamp.get('on', {}).get('data', 'held-out samples')} "
          f"({stamp.get('objective')} {stamp.get('score')}); --alpha overrides it")
    return float(alpha)


# ---- sweep ---------------------------------------------------------------------------------------
def _register_sweep(steer) -> None:
    p = steer.add_parser("sweep", help="layer x alpha x method sweep: success against side effects")
    _add_generating_model(p)
    options.add_data(p)
    p.add_argument("--source", type=valid.path, help="source store")
    p.add_argument("--target", type=valid.path, help="target store")
    p.add_argument("--layers", type=valid.names, default="final")
    p.add_argument("--alphas", type=valid.alphas, default="1,2,4",
                   help="comma list of steering strengths (finite, at most 1e6 in magnitude)")
    p.add_argument("--methods", type=valid.names, default="mean-diff",
                   help=f"comma list of {options.choice_list(METHODS)}")
    p.add_argument("--n-concepts", type=valid.positive_int, default=8, help=f"for the concept method: {N_CONCEPTS_HELP}")
    p.add_argument("--source-answer", default="yes", help="answer (or answer type) steered away from")
    p.add_argument("--target-answer", default="no", help="answer steered towards")
    p.add_argument("--normalize", action="store_true")
    _add_steering(p)
    options.add_out(p, "output folder")
    options.add_overwrite(p)
    options.add_partial(p)
    p.set_defaults(func=run_sweep, required=("model", "source", "target", "data", "out"))


def run_sweep(args) -> None:
    options.refuse_existing_out(args)
    from xlvlm.steer.run import sweep_stores, sweep_table
    from xlvlm.steer.settings import SweepSettings

    settings = SweepSettings(positions=args.positions, operator=args.operator, condition=_condition(args),
                             max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                             source_answer=args.source_answer, target_answer=args.target_answer,
                             methods=tuple(options.names(args.methods)), normalize=args.normalize,
                             n_concepts=args.n_concepts)
    samples = options.load_data(args)
    vlm = options.load_model(args)
    rows = sweep_stores(vlm, options.open_store(args.source, args), options.open_store(args.target, args), samples,
                        options.names(args.layers), args.alphas, settings, out=args.out, progress=not args.quiet,
                        command=options.command_text(args), overwrite=args.overwrite)
    print(sweep_table(rows), end="")
    print(f"wrote {args.out}/sweep.md, result.json, sweep.png")
