#!/usr/bin/env bash
# The GPU half of benchmarks/train_step.py, as run on a lent NVIDIA H200 (python3 with a CUDA torch;
# missing packages installed from wheels in .whl/ when that folder exists).
# Usage: bash benchmarks/gpu_train_step.sh OUT_DIR
set -u
OUT=${1:-/tmp/gpu-bench}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c "import torch, monai; print('torch', torch.__version__, 'monai', monai.__version__, torch.cuda.get_device_name())"
run() {  # H W batch precision workers model
  timeout 170 python3 benchmarks/train_step.py --size "$1" "$2" --batch "$3" --precision "$4" --workers "$5" \
    --model "$6" --device cuda --steps 20 --warmup 5 --json "$OUT/gpu_${6}_${1}x${2}_b${3}_${4}_w${5}.json" 2>&1 | tail -4
}
run 320 320 8 auto 4 fastmri
run 320 320 16 auto 8 fastmri
run 384 320 8 auto 4 fastmri
run 320 320 8 fp32 4 fastmri
run 64 64 8 auto 0 demo
# the demo recipe trained on the GPU end to end (CLI, held-out evaluation, checkpoints)
timeout 150 python3 -m ambientmri train recipes/demo.yaml --out /tmp/gpu-demo --set training.device=cuda \
  --steps 1000 --set training.log_every=100 --set training.eval_every=500 2>&1 | tail -8
cp /tmp/gpu-demo/metrics.jsonl "$OUT/gpu_demo_metrics.jsonl" 2>/dev/null || true
