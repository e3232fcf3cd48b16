from pathlib import Path

from xlvlm.clidoc import render

DOCS = Path(__file__).parent.parent / "docs"


def test_cli_reference_matches_help():
    assert (DOCS / "cli.md").read_text() == render(), "regenerate: python -m xlvlm.clidoc > docs/cli.md"
