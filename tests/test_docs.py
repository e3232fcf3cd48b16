from pathlib import Path

from xlvlm.clidoc import render

DOCS = Path(__file__).parent.parent / "docs"


def test_cli_reference_matches_help():
    assert (DOCS / "cli.md").read_text() == render(), "regenerate: python -m xlvlm.clidoc > docs/cli.md"


def test_the_api_page_names_each_estimator_and_strategy_once():
    """docs/api.md gives one line to each concept estimator, steering aggregator and operator,
    under the names that reach it (the Python object and its registry name), and to nothing else."""
    import re

    import xlvlm.concepts
    from xlvlm.concepts.estimators import ESTIMATORS
    from xlvlm.steer import aggregators, operators

    page = (DOCS / "api.md").read_text()
    section = page.split("## Estimators and steering strategies, one line each\n", 1)[1].split("\n## ", 1)[0]
    named = re.findall(r"^- `(\w+)` \(`([\w-]+)`\): \S", section, flags=re.M)
    assert len(named) == len(re.findall(r"^- ", section, flags=re.M))
    expected = [(cls.__name__, cls.name) for cls in ESTIMATORS]
    expected += [(fn.__name__, key) for key, fn in aggregators.AGGREGATORS.items()]
    expected += [(fn.__name__, key) for key, fn in operators.OPERATORS.items()]
    assert sorted(named) == sorted(expected)
    for python_name, key in named:
        obj = (getattr(xlvlm.concepts, python_name, None) or getattr(aggregators, python_name, None)
               or getattr(operators, python_name))
        assert obj in ESTIMATORS or aggregators.AGGREGATORS.get(key) is obj or operators.OPERATORS.get(key) is obj
