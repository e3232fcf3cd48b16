"""The shipped organisms, loaded once per test module that asks for them."""

import pytest

from xlvlm import organism


@pytest.fixture(scope="module")
def original():
    return organism.load("original")


@pytest.fixture(scope="module")
def finetuned():
    return organism.load("finetuned")


@pytest.fixture(scope="module")
def hallucinating():
    return organism.load("hallucinating")
