"""``xlvlm demo``: the end-to-end story on a small model, in one command.

This first slice runs extraction on a tiny random-weight LLaVA over real easy-VQA images; later
stages (concepts, shift, steering, report) join it as they land.
"""

from __future__ import annotations

from pathlib import Path


def run_demo(out: str | Path = "runs/demo", n_samples: int = 32, progress: bool = True) -> dict:
    """Run the demo into ``out``; a second run reuses what is already there. Returns a summary."""
    import xlvlm
    from xlvlm.data import load_samples, select_subset
    from xlvlm.testing import build_tiny

    out = Path(out)
    model_dir = out / "tiny-llava"
    if not (model_dir / "config.json").is_file():
        build_tiny("llava", model_dir)
    vlm = xlvlm.load_vlm(model_dir)
    samples = select_subset(load_samples("easyvqa:test"), n=n_samples, seed=0)
    store = xlvlm.extract(vlm, samples, layers=[1, "final"], select="last-prompt", out=out / "features",
                          batch_size=8, progress=progress)
    return {"model": str(model_dir), "store": str(store.path), "samples": len(store),
            "layers": store.layers, "shape": list(store.features("final").shape)}
