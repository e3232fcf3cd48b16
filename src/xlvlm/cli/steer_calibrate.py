"""``xlvlm steer calibrate``: choose alpha (and, among several steering files, which one) on
held-out samples under a side-effect limit (:mod:`xlvlm.steer.calibrate`)."""

from __future__ import annotations

from xlvlm.cli import options
from xlvlm.cli import validate as valid
from xlvlm.errors import XlvlmError
from xlvlm.steer.registry import OBJECTIVES

OBJECTIVE_HELP = ("pope-f1: F1 of yes/no answers against the samples' POPE labels; answer-shift: share of "
                  "--source-answer questions answered --target-answer")


def add_calibration_options(p, alphas_default: str = "0.5,1,2,4,8") -> None:
    """What calibration tries and scores (shared by `steer calibrate` and `steer learn --calibrate`)."""
    p.add_argument("--alphas", type=valid.alphas, default=alphas_default,
                   help="comma list of strengths tried (0, no steering, is always tried too)")
    p.add_argument("--objective", default="pope-f1", choices=OBJECTIVES, help=OBJECTIVE_HELP)
    p.add_argument("--control", type=valid.path,
                   help="samples with reference answers that steering should leave alone (a .jsonl file or any "
                        "--data form): their accuracy change is the side effect")
    p.add_argument("--control-limit", type=valid.positive_int, help="keep N random control samples (seeded by --seed)")
    p.add_argument("--max-side-effect", type=valid.points, default=0.02,
                   help="largest accuracy change allowed on --control, in points (default 2)")
    p.add_argument("--source-answer", default="yes", help="answer-shift: the answer steered away from")
    p.add_argument("--target-answer", default="no", help="answer-shift: the answer steered towards")


NORMALIZE_HELP = ("rescale every vector (each sample's, for per-sample and learned steering) to the layer's typical "
                  "state norm, the mean norm of the last prompt token's state over up to 32 --data samples: alpha is "
                  "then in units of that norm, whatever made the vectors")


def add_normalize(p) -> None:
    p.add_argument("--normalize", action="store_true", help=NORMALIZE_HELP)


def scaled(args, steering, vlm, samples):
    """``steering`` at the layer's typical state norm when --normalize is given or the file was
    calibrated normalized (the scale it was calibrated at is then reused), else as it is."""
    from xlvlm.steer.scale import Normalized, typical_state_norm

    stamp = getattr(steering, "metadata", {}).get("calibration")
    recorded = stamp.get("scale") if isinstance(stamp, dict) and isinstance(stamp.get("scale"), dict) else None
    if not (args.normalize or recorded):
        return steering
    scale = recorded or typical_state_norm(vlm, samples, steering.layers, batch_size=args.batch_size)
    print("normalized: alpha in units of the typical state norm " +
          ", ".join(f"{layer}: {value:.3g}" for layer, value in scale.items()))
    return Normalized(steering, scale)


def register(steer, add_steering, add_generating_model) -> None:
    p = steer.add_parser("calibrate", help="choose alpha on held-out samples under a side-effect limit")
    add_generating_model(p)
    options.add_data(p)
    p.add_argument("--vector", type=valid.path, action="append",
                   help="steering vector file; repeat to choose among several (e.g. one per layer)")
    p.add_argument("--learned", type=valid.path, help="learned steering (L2S): a `steer learn` folder or its file")
    p.add_argument("--per-sample", type=valid.path, help="per-sample vectors (P2S oracle; the samples' ids must be in it)")
    add_calibration_options(p)
    add_normalize(p)
    add_steering(p)
    options.add_out(p, "output folder (result.json, calibration.png, calibrated.safetensors)")
    p.set_defaults(func=run_calibrate, required=("model", "data", "out"))


def settings_from(args):
    from xlvlm.steer.calibrate import CalibrationSettings

    return CalibrationSettings(alphas=args.alphas, objective=args.objective, max_side_effect=args.max_side_effect,
                               source=args.source_answer, target=args.target_answer,
                               positions=getattr(args, "positions", "all"), operator=getattr(args, "operator", "add"),
                               max_new_tokens=args.max_new_tokens,
                               batch_size=getattr(args, "generation_batch_size", None) or args.batch_size)


def load_control(args) -> list[dict] | None:
    if not args.control:
        return None
    from xlvlm.data import load_samples, select_subset

    return select_subset(load_samples(args.control, **reader_options(args)), n=args.control_limit, seed=args.seed)


def reader_options(args) -> dict:
    """--image-root and --annotations, for reading a second set of samples (--control, --calibrate)."""
    return {k: v for k, v in (("image_root", args.image_root), ("annotations", args.annotations)) if v}


def _candidates(args) -> dict:
    from pathlib import Path

    from xlvlm.steer import LearnedSteering, PerSampleSteering, SteeringVector

    given = [name for name in ("vector", "learned", "per_sample") if getattr(args, name)]
    if len(given) != 1:
        raise XlvlmError("give --vector FILE (repeatable), --learned DIR or --per-sample FILE (one kind)")
    if args.learned:
        return {Path(args.learned).name: LearnedSteering.load(args.learned)}
    if args.per_sample:
        return {Path(args.per_sample).stem: PerSampleSteering.load(args.per_sample)}
    names = [Path(path).stem for path in args.vector]
    if len(set(names)) != len(names):
        names = [str(path) for path in args.vector]
    return {name: SteeringVector.load(path) for name, path in zip(names, args.vector)}


def run_calibrate(args) -> None:
    from xlvlm.steer.calibrate import calibrate
    from xlvlm.steer.calibrate_outputs import write_calibration
    from xlvlm.steer.protocol import gated

    settings = settings_from(args)
    candidates = _candidates(args)
    condition = None
    if args.condition:
        from xlvlm.steer.condition import load_condition

        condition = load_condition(args.condition)
    samples, control = options.load_data(args), load_control(args)
    vlm = options.load_model(args)
    on = {"data": str(args.data), "control": str(args.control) if args.control else None}
    scales, tried = {}, {}
    for name, steering in candidates.items():
        steering = scaled(args, steering, vlm, samples)
        scales[name] = getattr(steering, "scale", None)
        tried[name] = gated(steering, condition)
    result = calibrate(vlm, tried, samples, control, settings, progress=not args.quiet, on=on)
    saved = result.candidate if result.candidate in candidates else next(iter(candidates))  # "none": alpha 0
    result.scale = scales[saved]  # the alpha holds at this scale: steer apply reuses it
    path = write_calibration(result, candidates[saved], args.out, command=options.command_text(args))
    if control is None:
        options.warn("no --control samples: side effects were not measured and no limit was applied")
    print(f"wrote {args.out}: {result}; the chosen steering, stamped with its alpha, is {path}")
