"""Every recipe is a valid config of the command it names (keys known, ${VAR}s expand)."""

from pathlib import Path

import pytest

from xlvlm.cli import _apply_config, build_parser

RECIPES = sorted((Path(__file__).parent.parent / "recipes").glob("*.yaml"))
ENV = ["COCO_KARPATHY", "COCO_IMAGES", "MODEL", "VQAV2_QUESTIONS", "VQAV2_ANNOTATIONS", "VQAV2_IMAGES",
       "VQAV2_VAL_QUESTIONS", "VQAV2_VAL_ANNOTATIONS", "VQAV2_VAL_IMAGES"]


def _command(path: Path) -> list[str]:
    name = path.stem
    if name.endswith("-extract"):
        return ["extract"]
    if name.endswith("-concepts"):
        return ["concepts"]
    if name.endswith("-sweep"):
        return ["steer", "sweep"]
    return ["shift"]


def test_there_are_recipes():
    assert len(RECIPES) >= 6


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_is_a_valid_config(recipe, monkeypatch):
    for name in ENV:
        monkeypatch.setenv(name, f"/data/{name.lower()}")
    parser = build_parser()
    argv = _command(recipe) + ["--config", str(recipe)]
    args = parser.parse_args(argv)
    _apply_config(args, argv)
    text = " ".join(str(v) for v in vars(args).values())
    assert "${" not in text
