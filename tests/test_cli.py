import json
import subprocess
import sys

import pytest

from xlvlm.cli import main


def _jsonl(path, samples):
    path.write_text("".join(json.dumps(s) + "\n" for s in samples))
    return path


def test_extract_command_writes_a_store(tiny_dir, samples, tmp_path, capsys):
    data = _jsonl(tmp_path / "d.jsonl", samples[:3])
    code = main(["extract", "--model", str(tiny_dir("llava")), "--data", str(data), "--layers", "1,final",
                 "--select", "last-prompt", "--out", str(tmp_path / "s"), "--batch-size", "2", "--quiet"])
    assert code == 0
    assert "3 samples" in capsys.readouterr().out
    from xlvlm import FeatureStore
    assert FeatureStore(tmp_path / "s").features(1).shape[0] == 3


def test_extract_config_file_and_generate(tiny_dir, samples, tmp_path, capsys):
    data = _jsonl(tmp_path / "d.jsonl", samples[:2])
    config = tmp_path / "c.yaml"
    config.write_text(f"model: {tiny_dir('llava')}\ndata: {data}\nlayers: final\nmax-new-tokens: 3\n")
    code = main(["extract", "--config", str(config), "--generate", "--select", "generated-mean",
                 "--out", str(tmp_path / "s"), "--quiet"])
    assert code == 0, capsys.readouterr().err
    from xlvlm import FeatureStore
    store = FeatureStore(tmp_path / "s")
    assert store.settings.generation["max_new_tokens"] == 3 and "prediction" in store.samples[0]


@pytest.mark.parametrize("case, needle", [
    ("malformed", "d.jsonl:2: malformed JSON"),
    ("missing_image", "image not found"),
    ("bad_layer", "layer 99 out of range"),
    ("unknown_model", "cannot load model"),
    ("no_model", "--model is required"),
])
def test_bad_input_exits_2_with_one_line(case, needle, tiny_dir, samples, tmp_path, capsys):
    good = samples[:2]
    data = _jsonl(tmp_path / "d.jsonl", good)
    args = ["extract", "--model", str(tiny_dir("llava")), "--data", str(data), "--out", str(tmp_path / "s"), "--quiet"]
    if case == "malformed":
        data.write_text(json.dumps(good[0]) + "\n{oops\n")
    elif case == "missing_image":
        _jsonl(data, [dict(good[0], image=str(tmp_path / "gone.png"))])
    elif case == "bad_layer":
        args += ["--layers", "99"]
    elif case == "unknown_model":
        args[2] = str(tmp_path / "no-model")
    elif case == "no_model":
        args = args[:1] + args[3:]
    capsys.readouterr()  # drop what building the tiny model printed (when this test runs first)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("bad", ["missing", "corrupt"])
def test_a_bad_image_fails_before_the_model_loads_and_before_any_file(bad, samples, tmp_path, capsys):
    """The CLI checks images with the library's one check (xlvlm.data.check_images): a corrupt
    file fails there too, not after the model load (the model here does not exist: reaching
    the load would say "cannot load model"), and no store folder is started."""
    image = tmp_path / "bad.png"
    if bad == "corrupt":
        image.write_bytes(b"not a png")
    data = _jsonl(tmp_path / "d.jsonl", [samples[0], dict(samples[1], image=str(image))])
    code = main(["extract", "--model", str(tmp_path / "no-model"), "--data", str(data), "--out", str(tmp_path / "s"),
                 "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert ("image not found" if bad == "missing" else "corrupt or unreadable image") in err and "bad.png" in err
    assert not (tmp_path / "s").exists()


def test_console_script_help():
    result = subprocess.run([sys.executable, "-m", "xlvlm.cli", "extract", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--select" in result.stdout


def test_organism_commands_train_and_finetune_reduced(tmp_path, capsys):
    assert main(["organism", "train", "--reduced", "--out", str(tmp_path / "o"), "--quiet"]) == 0
    assert main(["organism", "finetune", "--reduced", "--original", str(tmp_path / "o"), "--out", str(tmp_path / "f"),
                 "--quiet"]) == 0
    import xlvlm
    assert xlvlm.load_vlm(tmp_path / "f").num_layers >= 1


def test_prompt_option_sets_the_prompt_of_reader_data_and_is_refused_for_jsonl(tiny_dir, samples, tmp_path, capsys):
    import shutil
    from pathlib import Path

    from xlvlm import FeatureStore

    folder = tmp_path / "images"
    folder.mkdir()
    for sample in samples[:2]:
        shutil.copy(sample["image"], folder / Path(sample["image"]).name)
    assert main(["extract", "--model", str(tiny_dir("llava")), "--data", str(folder), "--prompt", "What is this?",
                 "--layers", "1", "--out", str(tmp_path / "s"), "--quiet"]) == 0
    assert [s["prompt"] for s in FeatureStore(tmp_path / "s").samples] == ["What is this?"] * 2
    data = _jsonl(tmp_path / "d.jsonl", samples[:1])
    assert main(["extract", "--model", str(tiny_dir("llava")), "--data", str(data), "--prompt", "x",
                 "--out", str(tmp_path / "t"), "--quiet"]) == 2
    assert "'prompt' does not apply to jsonl" in capsys.readouterr().err


@pytest.mark.parametrize("command, says", [
    (["extract"], "rerun the same command to resume"),
    (["steer", "apply"], "its output was not completed; rerun the command to start it again"),
])
def test_ctrl_c_promises_resume_only_where_the_command_resumes(monkeypatch, capsys, command, says):
    import argparse

    from xlvlm import cli

    def interrupted(args):
        raise KeyboardInterrupt

    real = argparse.ArgumentParser.parse_args

    def parse(self, argv=None, namespace=None):
        args = real(self, argv, namespace)
        args.func, args.required = interrupted, ()
        return args

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse)
    assert cli.main(command) == 130
    err = capsys.readouterr().err
    assert err.strip() == f"xlvlm: interrupted; {says}"
