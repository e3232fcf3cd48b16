"""Loading runs no code the user did not consent to and unpickles nothing; what cannot be served
is a one-line error that says what to do."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import xlvlm
from xlvlm.cli import build_parser, main
from xlvlm.errors import XlvlmError


def _one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_remote_code_needs_consent(tiny_dir):
    with pytest.raises(XlvlmError, match="--trust-remote-code") as exc:
        xlvlm.load_vlm(tiny_dir("molmo"))
    assert "auto_map" in _one_line(exc)
    assert xlvlm.load_vlm(tiny_dir("molmo"), trust_remote_code=True).family == "molmo"


def test_every_command_that_takes_a_model_takes_the_consent_flag():
    parser = build_parser()
    commands = [["extract"], ["steer", "apply"], ["steer", "sweep"], ["concepts"], ["shift"]]
    for command in commands:
        args = parser.parse_args(command + ["--model", "m", "--trust-remote-code"])
        assert args.trust_remote_code is True, command
        assert parser.parse_args(command + ["--model", "m"]).trust_remote_code is False


def test_cli_refuses_remote_code_without_the_flag_and_runs_it_with(tiny_dir, samples, tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(s) + "\n" for s in samples[:2]))
    args = ["extract", "--model", str(tiny_dir("molmo")), "--data", str(data), "--out", str(tmp_path / "s"), "--quiet"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "--trust-remote-code" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "s").exists()
    assert main(args + ["--trust-remote-code"]) == 0


def test_pickled_weights_are_refused_without_unpickling(tiny_dir, tmp_path, monkeypatch):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_dir("llava"), folder)
    state = {k: v.clone() for k, v in xlvlm.load_vlm(folder).model.state_dict().items()}
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")

    def no_unpickling(*args, **kwargs):
        raise AssertionError("torch.load called: a pickle was read")

    monkeypatch.setattr(torch, "load", no_unpickling)
    with pytest.raises(XlvlmError, match="pytorch_model.bin") as exc:
        xlvlm.load_vlm(folder)
    assert "never unpickles" in _one_line(exc)


def test_a_model_that_is_no_vlm_names_the_supported_families(tmp_path):
    from transformers import LlamaConfig

    LlamaConfig(vocab_size=10, hidden_size=8, intermediate_size=8, num_hidden_layers=1,
                num_attention_heads=1).save_pretrained(tmp_path / "text_only")
    with pytest.raises(XlvlmError, match="supported families: .*gemma3") as exc:
        xlvlm.load_vlm(tmp_path / "text_only")
    assert "'llama'" in _one_line(exc)


def test_a_batch_the_processor_rejects_names_family_and_size(vlm_of, samples):
    vlm = vlm_of("llava")
    bad = [dict(samples[0]), dict(samples[1], prompt="two images <image> in one prompt")]
    with pytest.raises(XlvlmError, match="llava: the processor rejects a batch of 2 sample") as exc:
        vlm.encode(bad)
    assert "--batch-size 1" in _one_line(exc)
