"""The project's own hostile-input suite: generated stores, vector files, run folders, predictions
and configs with extreme but valid values, through every command that needs no model and
through serve's routes. The contract, whatever the input:

- exit 0 with a result whose numbers are all finite, or exit 2 with one line ``xlvlm: error: ...``;
- never a traceback (any other exception fails the test), never a non-finite number written;
- never an output that looks complete when the command failed (its --out is not created).

``make test`` runs a few examples per command (HOSTILE_EXAMPLES, default 6, half that for the
commands that train or draw); ``make fuzz`` runs many more (XLVLM_FUZZ_EXAMPLES=200) and shrinks
what fails. The database is off so every run draws afresh.
"""

import json
import math
import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import xlvlm
from xlvlm.cli import main
from xlvlm.errors import XlvlmError

FUZZ = "XLVLM_FUZZ_EXAMPLES" in os.environ
EXAMPLES = int(os.environ.get("XLVLM_FUZZ_EXAMPLES", os.environ.get("HOSTILE_EXAMPLES", "6")))
# Without shrinking in `make test` (a failure prints its seed; `make fuzz` shrinks it).
HOSTILE = settings(max_examples=EXAMPLES, deadline=None, database=None, print_blob=True,
                   phases=list(Phase) if FUZZ else [Phase.explicit, Phase.generate],
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                          HealthCheck.data_too_large])
# Commands that train or draw figures (seconds an example): half as many.
HOSTILE_SLOW = settings(HOSTILE, max_examples=max(2, EXAMPLES // 2))

# ---- values --------------------------------------------------------------------------------------
EXTREME_FLOATS = [0.0, -0.0, 1e-45, 1e-38, 1e-300, 1e18, 1e30, 1e36, 3.4e38, -3.4e38, 1e308,
                  float("nan"), float("inf"), float("-inf")]
floats = st.sampled_from(EXTREME_FLOATS) | st.floats(allow_nan=True, allow_infinity=True, width=32)
long_texts = st.sampled_from(["", " ", "x" * 5000, "é\u202e\u0000", "<script>alert(1)</script>", "../../etc",
                              "\udcff" * 3])
texts = st.text(max_size=20) | long_texts
scalars = (st.none() | st.booleans() | st.integers(-10**30, 10**30) | floats | texts
           | st.sampled_from([10**400, -(10**120)]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(texts, inner, max_size=4), max_leaves=10)
ids = st.one_of(st.integers(0, 3).map(str), st.integers(0, 3), texts, st.sampled_from([None, True, 1.5, [1]]))


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def _f32(value: float) -> float:
    """``value`` as float32 holds it (1e308 becomes inf, as a float32 store would hold it)."""
    return float(torch.tensor(value, dtype=torch.float64).float())


@st.composite
def matrices(draw, rows=None, dim=None):
    """(N, D) float32: mostly ordinary values, with extreme ones mixed in (or everywhere)."""
    n = rows if rows is not None else draw(st.integers(1, 6))
    d = dim if dim is not None else draw(st.integers(1, 6))
    base = torch.randn(n, d, generator=torch.Generator().manual_seed(draw(st.integers(0, 2**16))))
    kind = draw(st.sampled_from(["plain", "scaled", "sprinkled", "constant"]))
    if kind == "scaled":
        base = base * draw(st.sampled_from([1e-40, 1e-20, 1e20, 1e36, 3e38]))
    elif kind == "sprinkled":
        for _ in range(draw(st.integers(1, 3))):
            base[draw(st.integers(0, n - 1)), draw(st.integers(0, d - 1))] = _f32(draw(floats))
    elif kind == "constant":
        base = torch.full((n, d), _f32(draw(floats)))
    return base.float()


# ---- the contract --------------------------------------------------------------------------------
def _finite_json(value, where: str) -> None:
    if isinstance(value, float):
        assert math.isfinite(value), f"{where}: a non-finite number was written"
    elif isinstance(value, dict):
        for key, item in value.items():
            _finite_json(item, f"{where}.{key}")
    elif isinstance(value, list):
        for item in value:
            _finite_json(item, where)


def check_written(path: Path) -> None:
    """Every file under ``path``: JSON / JSONL without NaN or inf, safetensors all finite."""
    from safetensors import safe_open

    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for file in files:
        if file.suffix == ".json":
            _finite_json(json.loads(file.read_text(encoding="utf-8")), str(file))
        elif file.suffix == ".jsonl":
            for line in file.read_text(encoding="utf-8").splitlines():
                _finite_json(json.loads(line), str(file))
        elif file.suffix == ".safetensors":
            with safe_open(file, framework="pt") as handle:
                for name in handle.keys():
                    assert bool(torch.isfinite(handle.get_tensor(name)).all()), f"{file}: {name} not finite"


def run_command(argv, capsys, out: Path | None = None) -> int:
    """Run the CLI; assert the contract (see the module docstring); return the exit status."""
    existed = out is not None and out.exists()
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own exits
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code in (0, 2), f"exit {code}: {err[-2000:]}"
    if code == 2:
        lines = [line for line in err.splitlines() if line.startswith("xlvlm: error:")]
        assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
        if out is not None and not existed:
            assert not out.exists() or (out.is_dir() and not any(out.iterdir())), \
                f"{out} written by a command that failed"
    elif out is not None:
        check_written(out)
    return code


def _store(path: Path, features: torch.Tensor, sample_ids) -> bool:
    """Write a store of ``features`` at layer 1; False when the store itself refuses the input
    (a one-line XlvlmError is the contract there too)."""
    try:
        xlvlm.FeatureStore.from_tensors({"1": features}, [{"id": i} for i in sample_ids], path=path)
    except XlvlmError as exc:
        assert "\n" not in str(exc)
        return False
    return True


@pytest.fixture
def fresh(tmp_path_factory):
    """A new empty folder per example (hypothesis reuses the function's fixtures)."""
    return lambda: tmp_path_factory.mktemp("hostile")


# ---- stores through steer compute / condition, concepts, shift -----------------------------------
@HOSTILE
@given(source=matrices(), target=matrices(), method=st.sampled_from(["mean-diff", "mean-of-shifts", "pca", "concept"]),
       normalize=st.booleans(), per_sample=st.booleans(), same_ids=st.booleans())
def test_steer_compute_on_hostile_stores(fresh, capsys, source, target, method, normalize, per_sample, same_ids):
    folder = fresh()
    target = target[:, :1].expand(-1, source.shape[1]).contiguous() if target.shape[1] != source.shape[1] else target
    ids_s = [str(i) for i in range(source.shape[0])]
    ids_t = ids_s[:target.shape[0]] if same_ids else [f"t{i}" for i in range(target.shape[0])]
    if not (_store(folder / "s", source, ids_s) and _store(folder / "t", target, ids_t)):
        return
    argv = ["steer", "compute", "--source", folder / "s", "--target", folder / "t", "--layer", "1",
            "--out", folder / "v.safetensors"]
    if per_sample:
        argv.append("--per-sample")
    else:
        argv += ["--method", method, "--n-concepts", "2"] + (["--normalize"] if normalize else [])
    run_command(argv, capsys, folder / "v.safetensors")


@HOSTILE
@given(positive=matrices(dim=4), negative=matrices(dim=4), method=st.sampled_from(["lda", "mean-diff"]))
def test_steer_condition_on_hostile_stores(fresh, capsys, positive, negative, method):
    folder = fresh()
    if not (_store(folder / "p", positive, [f"p{i}" for i in range(len(positive))])
            and _store(folder / "n", negative, [f"n{i}" for i in range(len(negative))])):
        return
    run_command(["steer", "condition", "--positive", folder / "p", "--negative", folder / "n", "--layer", "1",
                 "--method", method, "--out", folder / "c.safetensors"], capsys, folder / "c.safetensors")


@HOSTILE_SLOW
@given(features=matrices(), method=st.sampled_from(["kmeans", "pca", "snmf", "nmf", "simple"]),
       n_concepts=st.integers(1, 4))
def test_concepts_on_a_hostile_store(fresh, capsys, features, method, n_concepts):
    folder = fresh()
    if not _store(folder / "s", features, [str(i) for i in range(len(features))]):
        return
    run_command(["concepts", "--features", folder / "s", "--layer", "1", "--method", method, "--n-concepts",
                 n_concepts, "--out", folder / "c", "--quiet", "--no-text-similarity"], capsys, folder / "c")


@HOSTILE_SLOW
@given(original=matrices(rows=6, dim=4), finetuned=matrices(rows=6, dim=4), n_concepts=st.integers(1, 3))
def test_shift_on_hostile_stores(fresh, capsys, original, finetuned, n_concepts):
    folder = fresh()
    ids_ = [str(i) for i in range(6)]
    if not (_store(folder / "o", original, ids_) and _store(folder / "f", finetuned, ids_)):
        return
    run_command(["shift", "--original", folder / "o", "--finetuned", folder / "f", "--layer", "1", "--method",
                 "kmeans", "--n-concepts", n_concepts, "--out", folder / "out"], capsys, folder / "out")


@HOSTILE_SLOW
@given(context=matrices(rows=5, dim=4), source=matrices(rows=5, dim=4), target=matrices(rows=5, dim=4),
       val_fraction=st.sampled_from(["0", "0.2", "0.9"]))
def test_steer_learn_on_hostile_stores(fresh, capsys, context, source, target, val_fraction):
    folder = fresh()
    ids_ = [str(i) for i in range(5)]
    if not all(_store(folder / name, rows, ids_) for name, rows in (("c", context), ("s", source), ("t", target))):
        return
    run_command(["steer", "learn", "--context", folder / "c", "--source", folder / "s", "--target", folder / "t",
                 "--layer", "1", "--epochs", "2", "--hidden", "3", "--val-fraction", val_fraction,
                 "--out", folder / "l"], capsys, folder / "l")


# ---- vector files ---------------------------------------------------------------------------------
@HOSTILE
@given(values=matrices(rows=1), header=json_values | st.just("{not json") | st.just(deep(5000)),
       name=st.sampled_from(["layer/1", "layer/final", "layer/", "other", "layer/1/x"]))
def test_vector_files_load_or_refuse_in_one_line(fresh, values, header, name):
    from safetensors.torch import save_file

    from xlvlm.steer import SteeringVector

    path = fresh() / "v.safetensors"
    text = header if isinstance(header, str) else json.dumps(header)
    save_file({name: values[0]}, str(path), metadata={"xlvlm": text})
    try:
        vector = SteeringVector.load(path)
    except XlvlmError as exc:
        assert "\n" not in str(exc)
        return
    assert all(math.isfinite(n) for n in vector.norms().values())


# ---- predictions through evaluate -------------------------------------------------------------------
prediction_records = st.fixed_dictionaries(
    {"id": ids, "prediction": texts | scalars},
    optional={"answer": texts | scalars, "label": st.sampled_from(["yes", "no", "Yes ", "maybe"]) | scalars,
              "answer_type": texts | scalars, "split": st.sampled_from(["random", "popular", 1, "1"]) | json_values,
              "answers": st.lists(texts, max_size=3) | scalars, "references": st.lists(texts, max_size=3) | scalars})


@st.composite
def prediction_files(draw):
    """Lines of a predictions JSONL: records, sometimes a broken line, deep JSON or non-UTF-8."""
    lines = [json.dumps(r, ensure_ascii=draw(st.booleans()), allow_nan=True).encode("utf-8", "surrogatepass")
             for r in draw(st.lists(prediction_records, max_size=5))]
    for extra in draw(st.lists(st.sampled_from([b"{", deep(3000).encode(), b"\xff\xfe", b"[]", b"9" * 5000,
                                                 b'{"id": "z", "prediction": "' + b"y" * 100000 + b'"}']),
                               max_size=1)):
        lines.insert(draw(st.integers(0, len(lines))), extra)
    return b"\n".join(lines) + b"\n"


@HOSTILE
@given(data=prediction_files(), baseline=st.none() | prediction_files(),
       task=st.sampled_from(["vqa", "pope", "safety", "caption"]), targeted=st.booleans())
def test_evaluate_hostile_predictions(fresh, capsys, data, baseline, task, targeted):
    folder = fresh()
    (folder / "p.jsonl").write_bytes(data)
    argv = ["evaluate", "--predictions", folder / "p.jsonl", "--task", task, "--no-meteor",
            "--out", folder / "r.json"]
    if baseline is not None:
        (folder / "b.jsonl").write_bytes(baseline)
        argv += ["--baseline", folder / "b.jsonl"]
    if targeted:
        argv += ["--source", "yes", "--target", "no"]
    run_command(argv, capsys, folder / "r.json")


# ---- run folders through report and serve -------------------------------------------------------
STAGES = ["concepts", "shift", "sweep", "learned-steering", "hallucination-steering", "evaluate", "table", "nope"]


@st.composite
def run_folders(draw, root: Path) -> Path:
    """A run folder: one to three stage results of generated content, some with raw hostile text."""
    run = root / "run"
    for k in range(draw(st.integers(1, 3))):
        folder = run / f"stage{k}"
        folder.mkdir(parents=True)
        raw = draw(st.sampled_from([None, None, None, deep(200), deep(100000), '{"stage": "concepts", "version": 1, '
                                    '"metrics": {"n": ' + "9" * 4001 + "}}", "\xff", "{"]))
        if raw is not None:
            (folder / "result.json").write_text(raw, encoding="utf-8", errors="surrogateescape")
            continue
        result = {"stage": draw(st.sampled_from(STAGES)), "version": draw(st.sampled_from([1, 1, 2, "1", None]))}
        for key in draw(st.lists(st.sampled_from(["settings", "metrics", "concepts", "summary", "rows", "columns",
                                                  "title", "side_effects", "reference", "goals", "targeted",
                                                  "per_type", "overall", "per_split", "training", "curve"]),
                                 max_size=5)):
            result[key] = draw(json_values)
        (folder / "result.json").write_text(json.dumps(result, allow_nan=True), encoding="utf-8")
        if draw(st.booleans()):
            (folder / "concept_grid.png").write_bytes(draw(st.sampled_from([b"", b"\x89PNG\r\n\x1a\n",
                                                                           b"GIF89a", b"\x00" * 64])))
    return run


@HOSTILE
@given(data=st.data())
def test_report_on_a_hostile_run_folder(fresh, capsys, data):
    run = data.draw(run_folders(fresh()))
    run_command(["report", run], capsys, run / "report.html")


@HOSTILE
@given(data=st.data(), route=st.sampled_from(["/api/run", "/api/concepts", "/api/shift", "/api/sweeps", "/report",
                                              "/api/predictions/files", "/api/predictions?file=stage0/p.jsonl",
                                              "/files/stage0/concept_grid.png", "/files/stage0/result.json",
                                              "/api/concepts/histogram?folder=stage0&concept=0",
                                              "/api/concepts/image?folder=stage0&concept=0&rank=0"]))
def test_serve_routes_on_a_hostile_run_folder(fresh, data, route):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from xlvlm.serve.app import create_app

    run = data.draw(run_folders(fresh()))
    (run / "stage0" / "p.jsonl").write_bytes(data.draw(prediction_files()))
    client = TestClient(create_app(run), base_url="http://127.0.0.1:8000", raise_server_exceptions=False)
    answer = client.get(route)
    assert answer.status_code in (200, 400, 403, 404), (answer.status_code, answer.text[:500])
    if answer.status_code != 200 and answer.headers["content-type"].startswith("application/json"):
        assert "\n" not in answer.json()["error"]


@HOSTILE
@given(body=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"GIF89a" + b"\x00" * 10, b"x" * 1000]) | st.binary(max_size=64))
def test_serve_upload_of_hostile_bytes(body):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from xlvlm.serve.app import create_app

    client = TestClient(create_app(Path(__file__).parent), base_url="http://127.0.0.1:8000",
                        raise_server_exceptions=False)
    answer = client.post("/api/upload", content=body)
    assert answer.status_code in (200, 400, 413), answer.text[:300]


# ---- configs -------------------------------------------------------------------------------------
@HOSTILE
@given(options=st.dictionaries(st.sampled_from(["layer", "layers", "method", "n-concepts", "n_concepts", "normalize",
                                                "out", "func", "source", "per-sample", "overwrite"]),
                               scalars | st.lists(scalars, max_size=3), max_size=4),
       raw=st.sampled_from([None, None, "a: &x [1]\nb: *x\n", "- 1\n- 2\n", "\xff", "layer: 1\nlayer: 2\n",
                            "{" * 5000]))
def test_hostile_config_files(fresh, capsys, options, raw):
    import yaml

    folder = fresh()
    _store(folder / "s", torch.randn(6, 4), [str(i) for i in range(6)])
    _store(folder / "t", torch.randn(6, 4) + 1, [str(i) for i in range(6)])
    config = folder / "c.yaml"
    if raw is not None:
        config.write_text(raw, encoding="utf-8", errors="surrogateescape")
    else:
        try:
            config.write_text(yaml.safe_dump(options, allow_unicode=True), encoding="utf-8", errors="surrogateescape")
        except (yaml.YAMLError, UnicodeEncodeError):
            return
    run_command(["steer", "compute", "--source", folder / "s", "--target", folder / "t", "--layer", "1",
                 "--out", folder / "v.safetensors", "--config", config], capsys, folder / "v.safetensors")
