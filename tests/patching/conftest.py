"""The organism and its colour pairs, made once for the patching tests that use them."""

import pytest

from xlvlm import organism
from xlvlm.apps.organism.colour_pairs import colour_pairs


@pytest.fixture(scope="session")
def original():
    return organism.load("original")


@pytest.fixture(scope="session")
def pair_samples(tmp_path_factory):
    """(clean, corrupted) samples of four organism colour pairs."""
    return colour_pairs(tmp_path_factory.mktemp("colour_pairs"), n=4, seed=0)
