"""The one output rule: an existing output is refused unless the caller asks to overwrite it."""

import pytest

from xlvlm.errors import XlvlmError
from xlvlm.io import refuse_existing_output


def test_missing_and_empty_outputs_pass(tmp_path):
    refuse_existing_output(tmp_path / "new.json", overwrite=False)
    (tmp_path / "empty").mkdir()
    refuse_existing_output(tmp_path / "empty", overwrite=False)


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_existing_output_is_refused_in_one_line_naming_the_option(tmp_path, kind):
    target = tmp_path / "out"
    if kind == "file":
        target.write_text("{}")
    else:
        target.mkdir()
        (target / "result.json").write_text("{}")
    with pytest.raises(XlvlmError) as err:
        refuse_existing_output(target, overwrite=False, option="--out")
    message = str(err.value)
    assert "\n" not in message and "--out" in message and "--overwrite" in message
    with pytest.raises(XlvlmError, match="overwrite=True"):
        refuse_existing_output(target, overwrite=False, option="out")
    refuse_existing_output(target, overwrite=True)
    assert target.exists()  # the rule only decides; it removes nothing
