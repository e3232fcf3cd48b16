"""--config: the command line wins under every name, unknown keys and odd values are one line,
${VAR} only in path options, YAML aliases refused before anything expands."""

import pytest
import torch

import xlvlm
from xlvlm.cli import _apply_config, build_parser


def _stores(tmp_path, samples):
    rows = [dict(samples[i], id=f"q{i}") for i in range(6)]
    g = torch.Generator().manual_seed(0)
    xlvlm.FeatureStore.from_tensors({"1": torch.randn(6, 4, generator=g)}, rows, path=tmp_path / "a")
    xlvlm.FeatureStore.from_tensors({"1": torch.randn(6, 4, generator=g) + 1}, rows, path=tmp_path / "b")


def test_command_line_flag_wins_over_an_alias_in_the_config(cli, tmp_path, samples):
    _stores(tmp_path, samples)
    config = tmp_path / "c.yaml"
    config.write_text(f"source: {tmp_path / 'a'}\ntarget: {tmp_path / 'b'}\nlayer: 99\n")  # no layer 99
    code, out, err = cli(["steer", "compute", "--config", config, "--layers", "1", "--out", tmp_path / "v.safetensors"])
    assert code == 0, err
    assert xlvlm.SteeringVector.load(tmp_path / "v.safetensors").layers == ["1"]


def test_an_abbreviated_flag_wins_too(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("n-concepts: 5\n")
    parser = build_parser()
    argv = ["concepts", "--config", str(config), "--n-conc", "7"]
    args = parser.parse_args(argv)
    _apply_config(args, argv)
    assert args.n_concepts == 7


@pytest.mark.parametrize("text, needle", [
    ("func: print\n", "unknown option 'func'"),
    ("command: extract\n", "unknown option 'command'"),
    ("argv: [x]\n", "unknown option 'argv'"),
    ("required: []\n", "unknown option 'required'"),
    ("verbose: true\n", "unknown option 'verbose'"),
    ("layers: 1\nlayers: 2\n", "'layers' is set twice"),
    ("batch-size: abc\n", "batch-size: expected a whole number"),
    ("batch-size: -2\n", "batch-size: must be at least 1"),
    ("batch_size: [1, 2]\n", "batch_size: expected a whole number"),
    ("alphas: [1, .nan]\n", "alphas: expected a finite number"),
    ("alphas: {a: 1}\n", "alphas: expected a value"),
    ("normalize: 'yes'\n", "normalize: expected true or false"),
    ("operator: subtract\n", "operator: 'subtract' is not one of add, project-out"),
    ("out:\n", "out: expected a value"),
    ("source-answer: true\n", "source-answer: expected a value"),
    ("- a\n- b\n", "expected a mapping"),
    ("a: [\n", "malformed YAML"),
])
def test_bad_config_is_one_line_naming_the_file_and_key(cli, tmp_path, text, needle):
    config = tmp_path / "c.yaml"
    config.write_text(text)
    code, _, err = cli(["steer", "sweep", "--config", config])
    assert code == 2 and needle in err and "c.yaml" in err and len(err.splitlines()) == 1, err


def test_two_names_of_one_option_are_refused(cli, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("layer: 1\nlayers: 2\n")
    code, _, err = cli(["steer", "compute", "--config", config])
    assert code == 2 and "'layer' and 'layers' set the same option" in err


def test_binary_config_is_one_line(cli, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    code, _, err = cli(["extract", "--config", config])
    assert code == 2 and "not UTF-8" in err and len(err.splitlines()) == 1


def test_yaml_alias_bomb_fails_fast(cli, tmp_path):
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
              f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]" for i in range(8)]
    config = tmp_path / "bomb.yaml"
    config.write_text("\n".join(lines) + "\nprompt: *i\n")
    code, _, err = cli(["extract", "--config", config])
    assert code == 2 and "aliases" in err and len(err.splitlines()) == 1


def test_environment_is_expanded_only_in_path_options(tmp_path, monkeypatch):
    monkeypatch.setenv("XLVLM_TEST_DATA", "/data/x.jsonl")
    monkeypatch.setenv("XLVLM_TEST_TOKEN", "hf_secret")
    config = tmp_path / "c.yaml"
    config.write_text("data: ${XLVLM_TEST_DATA}\nprompt: 'say ${XLVLM_TEST_TOKEN}'\ncontains: ${XLVLM_TEST_TOKEN}\n")
    parser = build_parser()
    argv = ["extract", "--config", str(config)]
    args = parser.parse_args(argv)
    _apply_config(args, argv)
    assert args.data == "/data/x.jsonl"
    assert args.prompt == "say ${XLVLM_TEST_TOKEN}" and args.contains == "${XLVLM_TEST_TOKEN}"
    assert "hf_secret" not in " ".join(str(v) for v in vars(args).values())


def test_unset_variable_in_a_path_option_is_one_line(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("XLVLM_TEST_UNSET", raising=False)
    config = tmp_path / "c.yaml"
    config.write_text("data: ${XLVLM_TEST_UNSET}/d.jsonl\n")
    code, _, err = cli(["extract", "--config", config])
    assert code == 2 and "XLVLM_TEST_UNSET is not set" in err


def test_config_values_are_typed_like_the_command_line(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("alphas: [1, 2.5]\nbatch-size: 4\nnormalize: true\nlayers: [3, 5]\n")
    parser = build_parser()
    argv = ["steer", "sweep", "--config", str(config)]
    args = parser.parse_args(argv)
    _apply_config(args, argv)
    assert args.alphas == [1.0, 2.5] and args.batch_size == 4 and args.normalize is True and args.layers == "3,5"
