import json

import torch

import xlvlm
from xlvlm.cli import main
from xlvlm.testing.tiny_clip import build_tiny_clip


def test_concepts_workflow_on_a_tiny_model(tiny_dir, vlm_of, tmp_path, capsys):
    from xlvlm.data import load_samples, select_subset

    vlm = vlm_of("llava")
    samples = select_subset(load_samples("easyvqa:test"), n=30, seed=1)
    store = xlvlm.extract(vlm, samples, layers=[2], select="last-prompt", out=tmp_path / "feats", progress=False)
    clip = build_tiny_clip(tmp_path / "clip")
    code = main(["concepts", "--features", str(store.path), "--layer", "2", "--method", "kmeans", "--n-concepts", "4",
                 "--model", str(tiny_dir("llava")), "--clip-model", str(clip), "--top-samples", "5",
                 "--out", str(tmp_path / "c"), "--quiet"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "c" / "result.json").read_text())
    metrics = summary["metrics"]
    for name in ("reconstruction_r2", "overlap", "overlap_random_words", "clipscore_top1", "clipscore_top3_random_words",
                 "clipscore_words_top1", "clipscore_words_top3_random_words",
                 "text_similarity_top1", "text_similarity_top3_random_words"):
        assert isinstance(metrics[name], float), name
    assert 0 <= metrics["clipscore_top1"] <= 2.5 and -1 <= metrics["text_similarity_top1"] <= 1
    assert len(summary["concepts"]) == 4 and all(len(c["mas"]) <= 5 for c in summary["concepts"])
    assert summary["settings"]["n_train"] == 24 and summary["settings"]["n_test"] == 6
    assert (tmp_path / "c" / "concept_grid.png").stat().st_size > 1000
    assert (tmp_path / "c" / "patch_heatmaps.png").stat().st_size > 1000
    cd = xlvlm.concepts.ConceptDictionary.load(tmp_path / "c" / "dictionary")
    assert cd.components.shape == (4, vlm.hidden_size)


def test_patch_heatmap_is_the_projection_of_image_tokens(vlm_of, samples):
    from xlvlm.concepts.grounding.patches import patch_heatmaps
    from xlvlm.hooks import record

    vlm = vlm_of("llava")
    direction = torch.randn(1, vlm.hidden_size)
    heat = patch_heatmaps(vlm, samples[:1], "1", direction)[0]
    batch = vlm.encode(samples[:1])
    with record(vlm, ["1"]) as rec:
        vlm.forward(batch)
    tokens = rec.stacked("1")[0][vlm.image_mask(batch)[0]]
    expected = tokens[1:] @ (direction[0] / direction[0].norm())  # the class token is dropped
    assert heat.shape == (4, 4)
    torch.testing.assert_close(torch.as_tensor(heat).flatten(), expected, rtol=1e-5, atol=1e-5)
