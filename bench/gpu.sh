#!/usr/bin/env bash
# Every GPU benchmark in one prepared run, for a session that is lent a GPU machine for a few
# minutes (the `device` tool). That machine has torch, transformers 5.x, matplotlib and the
# rest, but not easy-vqa (the benchmarks' images), and it cannot download: carry its wheel.
#
# Once, here (repository root):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps -d .whl easy-vqa==1.0
# Then one device call, with carry [".whl"] and timeout_s 540:
#   bash bench/gpu.sh
# It appends the GPU sections to bench/RESULTS.md and copies that file (and the log) to $OUT;
# commit the RESULTS.md that comes back. Try it on the CPU first, writing nothing:
#   PYTHON=.venv/bin/python SHAPE=tiny DEVICE=cpu WRITE= bash bench/gpu.sh
set -euo pipefail
PYTHON=${PYTHON:-python3}
SHAPE=${SHAPE:-llava-7b}
DEVICE=${DEVICE:-cuda}
WRITE=${WRITE---write}
OUT=${OUT:-/tmp/xlvlm-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1

if compgen -G ".whl/*.whl" > /dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD/src:${PYTHONPATH:-}   # the package itself, without installing its pins

{
    command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    "$PYTHON" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
    # Each step is bounded so that the whole run ends well inside one 10-minute call.
    timeout 200 "$PYTHON" bench/extract.py --shape "$SHAPE" --device "$DEVICE" $WRITE || echo "extract: FAILED ($?)"
    timeout 120 "$PYTHON" bench/steer.py --shape "$SHAPE" --device "$DEVICE" --repeats 5 $WRITE || echo "steer: FAILED ($?)"
    if [ -n "$WRITE" ]; then concepts_write=""; else concepts_write="--no-write"; fi
    if [ "$SHAPE" = tiny ]; then concepts_size="--quick"; else concepts_size=""; fi
    # sklearn stays on the CPU: a 60 s budget keeps this step bounded (its ratio is then a lower bound).
    timeout 150 "$PYTHON" bench/concepts.py --device "$DEVICE" --sklearn-budget 60 $concepts_size $concepts_write \
        || echo "concepts: FAILED ($?)"
} 2>&1 | tee "$OUT/gpu-bench.log"
cp bench/RESULTS.md "$OUT/RESULTS.md"
