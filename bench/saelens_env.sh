#!/usr/bin/env bash
# Builds bench/.venv-saelens: SAELens beside this package, for bench/saelens_check.py.
#
# Its own venv because sae-lens brings ~45 packages (transformer-lens, datasets, wandb,
# sentencepiece, ...) that the project's venv does not carry and its tests should not see.
# The project's venv (BASE, default .venv) is layered underneath through a .pth file, so its
# torch (2.14.1) and everything else already there are used as they are, never replaced:
# pip installs only what is missing, into bench/.venv-saelens.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:-.venv}
VENV=bench/.venv-saelens
"$BASE/bin/python" -m venv --without-pip "$VENV" 2>/dev/null || "$BASE/bin/python" -m venv "$VENV"
base_site=$("$BASE/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
own_site=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "$base_site" > "$own_site/_project_venv.pth"
pins=$("$BASE/bin/python" -c "import torch, torchvision; print(f'torch=={torch.__version__.split(\"+\")[0]} torchvision=={torchvision.__version__.split(\"+\")[0]}')")
"$VENV/bin/python" -m pip install -q $pins sae-lens
"$VENV/bin/python" -c "import sae_lens, torch; print('sae-lens', sae_lens.__version__, 'torch', torch.__version__)"
