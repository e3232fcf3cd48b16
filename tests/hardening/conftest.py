import pytest

from xlvlm.cli import main


@pytest.fixture
def cli(capsys):
    """Run the CLI as a user would: (exit status, stdout, stderr), argparse's own exits included."""
    def run(argv):
        capsys.readouterr()  # not what fixtures printed before (e.g. building a tiny model)
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err.strip()
    return run
