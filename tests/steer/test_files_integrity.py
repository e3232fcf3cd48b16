"""Vector, condition and dictionary files are untrusted input: finite numbers, the right keys
and shapes, sizes that fit each other and the model. Each case once ended in a traceback or a
NaN/inf written to disk; now each is one line naming the file (exit status 2)."""

import json

import pytest
import torch
from safetensors.torch import save_file

import xlvlm
from xlvlm.cli import main
from xlvlm.concepts import ConceptDictionary, learn_concepts
from xlvlm.errors import XlvlmError
from xlvlm.steer import SteeringVector
from xlvlm.steer.condition import Condition, load_condition, save_condition
from tests.scale.conftest import write_jsonl, write_store


def _one_line(capsys, code) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    return err


def _store(path, rows, samples):
    fields = [{"image": s["image"], "prompt": s["prompt"]} for s in samples[:rows.shape[0]]]
    write_store(path, {"final": rows}, shard_rows=4, fields=fields)
    return path


# ---- NaN / inf --------------------------------------------------------------------------------
def test_steer_compute_never_writes_an_infinite_vector(samples, tmp_path, capsys):
    big = torch.full((4, 3), 3e38)
    source, target = _store(tmp_path / "s", -big, samples), _store(tmp_path / "t", big, samples)
    out = tmp_path / "v.safetensors"
    code = main(["steer", "compute", "--source", str(source), "--target", str(target), "--layer", "final",
                 "--out", str(out)])
    err = _one_line(capsys, code)
    assert "holds NaN or inf" in err and "layer final" in err and not out.exists()
    with pytest.raises(XlvlmError, match="not written"):
        SteeringVector({"final": torch.tensor([1.0, float("inf")])}).save(out)
    assert not out.exists()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_vector_files_with_nan_or_inf_are_refused(value, tmp_path, capsys):
    path = tmp_path / "v.safetensors"
    save_file({"layer/1": torch.tensor([0.5, value, 1.0])}, path, metadata={"xlvlm": "{}"})
    code = main(["steer", "apply", "--model", str(tmp_path / "no-model"), "--data", "easyvqa:test",
                 "--vector", str(path), "--out", str(tmp_path / "p.jsonl")])
    err = _one_line(capsys, code)
    assert f"{path}: the vector for layer 1 holds NaN or inf" in err


def test_condition_files_with_nan_or_inf_are_refused(tmp_path):
    path = tmp_path / "c.safetensors"
    save_file({"direction": torch.tensor([1.0, float("nan")])}, path,
              metadata={"xlvlm_condition": json.dumps({"layer": "1", "threshold": 0.0})})
    with pytest.raises(XlvlmError, match="'direction' holds NaN or inf"):
        load_condition(path)
    save_file({"direction": torch.tensor([1.0, 0.0])}, path,
              metadata={"xlvlm_condition": '{"layer": "1", "threshold": NaN}'})
    with pytest.raises(XlvlmError, match="'threshold' is 'nan', not a finite number"):
        load_condition(path)
    with pytest.raises(XlvlmError, match="not written"):
        save_condition(Condition("1", torch.tensor([1.0, 0.0]), float("inf")), tmp_path / "d.safetensors")
    assert not (tmp_path / "d.safetensors").exists()


# ---- odd files --------------------------------------------------------------------------------
def _vector_file(path, case):
    if case == "text":
        path.write_text("not a safetensors file\n")
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "truncated":
        SteeringVector({"1": torch.ones(64)}).save(path)
        path.write_bytes(path.read_bytes()[:-40])
    elif case == "wrong keys":
        save_file({"direction": torch.ones(4)}, path)
    elif case == "2-D":
        save_file({"layer/1": torch.ones(2, 4)}, path)
    elif case == "integers":
        save_file({"layer/1": torch.ones(4, dtype=torch.int64)}, path)
    elif case == "sizes differ":
        save_file({"layer/1": torch.ones(4), "layer/2": torch.ones(5)}, path)
    elif case == "metadata not an object":
        save_file({"layer/1": torch.ones(4)}, path, metadata={"xlvlm": "[1, 2]"})
    elif case == "metadata not JSON":
        save_file({"layer/1": torch.ones(4)}, path, metadata={"xlvlm": "{oops"})
    return path


VECTOR_CASES = ["text", "empty", "truncated", "wrong keys", "2-D", "integers", "sizes differ",
                "metadata not an object", "metadata not JSON"]


@pytest.mark.parametrize("case", VECTOR_CASES)
def test_odd_vector_files_are_one_line(case, tmp_path, capsys):
    path = _vector_file(tmp_path / "v.safetensors", case)
    code = main(["steer", "apply", "--model", str(tmp_path / "no-model"), "--data", "easyvqa:test",
                 "--vector", str(path), "--out", str(tmp_path / "p.jsonl")])
    assert str(path) in _one_line(capsys, code)


def _condition_file(path, case):
    meta = {"layer": "1", "threshold": 0.5, "above": True}
    tensors = {"direction": torch.tensor([0.6, 0.8])}
    if case == "text":
        path.write_text("threshold: 1\n")
        return path
    if case == "truncated":
        save_file(tensors, path, metadata={"xlvlm_condition": json.dumps(meta)})
        path.write_bytes(path.read_bytes()[:-3])
        return path
    if case == "no metadata":
        save_file(tensors, path)
        return path
    if case == "wrong keys":
        tensors = {"layer/1": tensors["direction"]}
    elif case == "2-D":
        tensors = {"direction": torch.ones(2, 2)}
    elif case == "no layer":
        meta.pop("layer")
    elif case == "threshold text":
        meta["threshold"] = "high"
    elif case == "above text":
        meta["above"] = "yes"
    elif case == "metadata a list":
        meta = [1, 2]
    save_file(tensors, path, metadata={"xlvlm_condition": json.dumps(meta)})
    return path


@pytest.mark.parametrize("case", ["text", "truncated", "no metadata", "wrong keys", "2-D", "no layer",
                                  "threshold text", "above text", "metadata a list"])
def test_odd_condition_files_are_one_line(case, tmp_path):
    path = _condition_file(tmp_path / "c.safetensors", case)
    with pytest.raises(XlvlmError) as info:
        load_condition(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_valid_condition_file_still_loads(tmp_path):
    condition = load_condition(_condition_file(tmp_path / "c.safetensors", "valid"))
    assert condition.layer == "1" and condition.threshold == 0.5 and condition.above


# ---- hidden sizes that do not fit --------------------------------------------------------------
def test_stores_of_different_hidden_sizes(samples, tmp_path, capsys):
    small = _store(tmp_path / "small", torch.rand(8, 4), samples)
    large = _store(tmp_path / "large", torch.rand(8, 6), samples)
    out = tmp_path / "out"
    commands = {
        "steer compute": ["steer", "compute", "--source", str(small), "--target", str(large), "--layer", "final",
                          "--out", str(out / "v.safetensors")],
        "steer compute pca": ["steer", "compute", "--source", str(small), "--target", str(large), "--layer",
                              "final", "--method", "pca", "--out", str(out / "v.safetensors")],
        "steer condition": ["steer", "condition", "--positive", str(small), "--negative", str(large), "--layer",
                            "final", "--out", str(out / "c.safetensors")],
        "shift": ["shift", "--original", str(small), "--finetuned", str(large), "--layer", "final",
                  "--n-concepts", "2", "--out", str(out / "shift")],
    }
    for name, args in commands.items():
        err = _one_line(capsys, main(args))
        assert ("4" in err and "6" in err) and ("hidden size" in err or "shapes" in err), (name, err)
    assert not out.exists() or not any(out.rglob("*.safetensors"))


def test_stores_or_files_that_do_not_fit_the_model(tiny_dir, samples, tmp_path, capsys):
    model = str(tiny_dir("llava"))
    hidden = xlvlm.load_vlm(model).hidden_size
    store = _store(tmp_path / "s", torch.rand(8, hidden + 3), samples)
    data = write_jsonl(tmp_path / "d.jsonl", samples[:2])
    capsys.readouterr()
    err = _one_line(capsys, main(["concepts", "--features", str(store), "--layer", "final", "--model", model,
                                  "--n-concepts", "2", "--no-text-similarity", "--quiet", "--out",
                                  str(tmp_path / "c")]))
    assert f"hidden size {hidden + 3}" in err and f"has {hidden}" in err
    err = _one_line(capsys, main(["shift", "--original", str(store), "--finetuned", str(store), "--layer", "final",
                                  "--model", model, "--n-concepts", "2", "--out", str(tmp_path / "sh")]))
    assert "hidden sizes differ" in err and f"--model {model} {hidden}" in err
    other = _store(tmp_path / "o", torch.rand(8, hidden + 3) + 1, samples)
    err = _one_line(capsys, main(["steer", "sweep", "--model", model, "--data", str(data), "--source", str(store),
                                  "--target", str(other), "--alphas", "1", "--quiet", "--out", str(tmp_path / "sw")]))
    assert f"hidden size {hidden}" in err
    assert not (tmp_path / "sw" / "baseline.jsonl").exists()  # refused before generating anything
    vector = SteeringVector({"1": torch.ones(hidden)}).save(tmp_path / "v.safetensors")
    save_condition(Condition("0", torch.ones(hidden + 1) / (hidden + 1) ** 0.5, 0.0), tmp_path / "c.safetensors")
    err = _one_line(capsys, main(["steer", "apply", "--model", model, "--data", str(data), "--vector", str(vector),
                                  "--condition", str(tmp_path / "c.safetensors"), "--quiet",
                                  "--out", str(tmp_path / "p.jsonl")]))
    assert "condition direction has size" in err and not (tmp_path / "p.jsonl").exists()


# ---- concept dictionaries ---------------------------------------------------------------------
@pytest.fixture
def saved_dictionary(tmp_path):
    cd = learn_concepts(torch.rand(10, 4), method="kmeans", n_concepts=3, seed=0)
    return cd.save(tmp_path / "dictionary")


def _rewrite_meta(folder, change):
    meta = json.loads((folder / "concepts.json").read_text())
    change(meta)
    (folder / "concepts.json").write_text(json.dumps(meta))


def _retensor(folder, tensors):
    from xlvlm.io import sha256_file

    save_file(tensors, folder / "concepts.safetensors")
    _rewrite_meta(folder, lambda m: m.update(tensors_sha256=sha256_file(folder / "concepts.safetensors")))


DICTIONARY_CASES = {
    "meta a list": lambda f: (f / "concepts.json").write_text("[]"),
    "meta binary": lambda f: (f / "concepts.json").write_bytes(b"\xff\xfe\x00"),
    "meta deeply nested": lambda f: (f / "concepts.json").write_text("[" * 100_000),
    "no method": lambda f: _rewrite_meta(f, lambda m: m.pop("method")),
    "params a list": lambda f: _rewrite_meta(f, lambda m: m.update(params=[1])),
    "version text": lambda f: _rewrite_meta(f, lambda m: m.update(version="2")),
    "n_concepts text": lambda f: _rewrite_meta(f, lambda m: m.update(n_concepts="3")),
    "no components": lambda f: _retensor(f, {"activations": torch.rand(10, 3)}),
    "components 1-D": lambda f: _retensor(f, {"components": torch.rand(12), "activations": torch.rand(10, 3)}),
    "activations of another K": lambda f: _retensor(f, {"components": torch.rand(3, 4),
                                                        "activations": torch.rand(10, 2)}),
    "NaN components": lambda f: _retensor(f, {"components": torch.full((3, 4), float("nan")),
                                              "activations": torch.rand(10, 3)}),
    "tensors not safetensors": lambda f: _retensor_bytes(f, b"\x00" * 64),
}


def _retensor_bytes(folder, data):
    from xlvlm.io import sha256_file

    (folder / "concepts.safetensors").write_bytes(data)
    _rewrite_meta(folder, lambda m: m.update(tensors_sha256=sha256_file(folder / "concepts.safetensors")))


@pytest.mark.parametrize("case", DICTIONARY_CASES)
def test_malformed_dictionaries_are_one_line(case, saved_dictionary, tmp_path, capsys):
    DICTIONARY_CASES[case](saved_dictionary)
    with pytest.raises(XlvlmError) as info:
        ConceptDictionary.load(saved_dictionary)
    assert str(saved_dictionary) in str(info.value) and "\n" not in str(info.value)
    code = main(["steer", "compute", "--method", "concept", "--concepts", str(saved_dictionary), "--from", "0",
                 "--to", "1", "--layer", "final", "--out", str(tmp_path / "v.safetensors")])
    assert str(saved_dictionary) in _one_line(capsys, code)
