"""docs/models.md's family table is what the registry and the tiny builders say."""

from pathlib import Path

from tests.familydoc import END, START, replace_table, table
from xlvlm.models import families

PAGE = Path(__file__).parent.parent.parent / "docs" / "models.md"


def test_the_committed_table_is_up_to_date():
    page = PAGE.read_text()
    assert replace_table(page) == page, "regenerate: python -m tests.familydoc --write docs/models.md"


def test_the_table_has_one_row_per_registered_family():
    rows = [line for line in table().splitlines() if line.startswith("| ")][2:]  # after header and rule
    assert sorted(row.split("|")[2].strip().strip("`") for row in rows) == sorted(families())
    assert table().startswith(START) and table().endswith(END)
