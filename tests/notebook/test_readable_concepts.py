"""Concepts a person reads: no chat-template words, and top samples with question and answer."""

import json

import torch
from PIL import Image

import xlvlm
from xlvlm.cli import main
from xlvlm.concepts.readable import summary_lines, template_words
from xlvlm.concepts.workflow import run_concepts


def test_template_words_come_from_the_models_own_template(vlm_of):
    vlm = vlm_of("llava")
    words = template_words(vlm)
    rendered = vlm.format_prompt("what shape?", "a circle")[0]  # "USER: <image>\n... ASSISTANT: ...</s>"
    assert {"user", "assistant", "image"} <= words and "USER" in rendered and "ASSISTANT" in rendered
    assert not {"what", "shape", "circle", "xlvlmprobeprompt"} & words  # the probe's text is not template text


def _planted_store(vlm, samples, token_id: int):
    """Features that all point at one token's unembedding (so its word tops every concept)."""
    direction = vlm.lm_head.weight[token_id].detach().float()
    g = torch.Generator().manual_seed(0)
    X = direction * 5 + 0.01 * torch.randn(len(samples), vlm.hidden_size, generator=g)
    return xlvlm.FeatureStore.from_tensors({2: X}, samples, model=vlm.name, num_layers=vlm.num_layers)


def test_workflow_drops_template_words_and_shows_questions_and_answers(vlm_of, samples, tmp_path, capsys):
    vlm = vlm_of("llava")
    user = vlm.tokenizer.convert_tokens_to_ids("USER")
    assert xlvlm.ground_text(vlm, vlm.lm_head.weight[user:user + 1].detach() * 5, top_k=3)[0][0] == "user"
    pictures = [dict(s, image=Image.open(s["image"])) if i % 2 else s for i, s in enumerate(samples)]
    store = _planted_store(vlm, pictures, user)
    summary = run_concepts(store, 2, tmp_path / "c", method="kmeans", n_concepts=2, vlm=vlm, top_k_words=4,
                           top_k_samples=3, text_similarity=False, test_fraction=0, heatmaps=0, progress=False)
    removed = set(summary["settings"]["template_words_removed"])
    assert "user" in removed
    for concept in summary["concepts"]:
        assert concept["words"] and not removed & set(concept["words"])
        assert len(concept["words"]) <= 4
        for top in concept["top_samples"]:
            source = next(s for s in samples if s["id"] == top["id"])
            assert top["question"] == source["prompt"] and top["answer"] == source["answer"]
            assert top["image"] == source["image"] or top["image"].startswith("<PIL.Image")
    written = json.loads((tmp_path / "c" / "result.json").read_text())
    assert written["concepts"][0]["top_samples"] == summary["concepts"][0]["top_samples"]
    assert (tmp_path / "c" / "concept_grid.png").stat().st_size > 1000
    lines = summary_lines(summary["concepts"], n_samples=2)
    first = summary["concepts"][0]["top_samples"][0]
    assert lines[0].startswith("concept  0: ") and f"Q: {first['question'][:20]}" in lines[1]
    assert all(len(line) <= 100 for line in lines)
    research = run_concepts(store, 2, tmp_path / "r", method="kmeans", n_concepts=2, vlm=vlm, top_k_words=4,
                            top_k_samples=3, text_similarity=False, test_fraction=0, heatmaps=0, progress=False,
                            word_filter="research")  # the research code's filter keeps template words
    assert research["settings"]["template_words_removed"] == []
    assert any("user" in concept["words"] for concept in research["concepts"])


def test_cli_concepts_prints_top_samples(tiny_dir, vlm_of, samples, tmp_path, capsys):
    vlm = vlm_of("llava")
    store = xlvlm.extract(vlm, samples, layers=[2], out=tmp_path / "feats", progress=False)
    code = main(["concepts", "--features", str(store.path), "--layer", "2", "--method", "kmeans", "--n-concepts", "2",
                 "--model", str(tiny_dir("llava")), "--no-text-similarity", "--top-samples", "3",
                 "--out", str(tmp_path / "c"), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    summary = json.loads((tmp_path / "c" / "result.json").read_text())
    top = summary["concepts"][0]["top_samples"][0]
    assert f"{top['id']}  Q: {top['question'][:20]}" in out and f"A: {top['answer']}" in out
    assert f"[{top['image'].rsplit('/', 1)[-1]}]" in out
