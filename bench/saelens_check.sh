#!/usr/bin/env bash
# Runs the SAELens interop tests (bench/saelens/test_saelens_interop.py) in bench/.venv-saelens,
# which bench/saelens_env.sh builds. Result in bench/RESULTS.md ("SAELens interop").
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x bench/.venv-saelens/bin/python ] || bash bench/saelens_env.sh
PYTHONPATH=$PWD/src HF_HUB_OFFLINE=1 bench/.venv-saelens/bin/python -c \
  "import sae_lens, torch, xlvlm; print('sae-lens', sae_lens.__version__, '| torch', torch.__version__, '|', xlvlm.__file__)"
PYTHONPATH=$PWD/src HF_HUB_OFFLINE=1 bench/.venv-saelens/bin/python -m pytest bench/saelens/test_saelens_interop.py -q -p no:cacheprovider "$@"
