#!/usr/bin/env bash
# The study's GPU checks on one H200-class GPU, run from the repository root (docs/results.md):
#   1. seconds per step and peak GPU memory of every built-in recipe (benchmarks/recipe_resources.py);
#   2. the `scale` profile of benchmarks/study.py (the cpu profile's data and network, 20x the training
#      images) on the settings that matter most, within a time budget.
# Results go to $OUT (default gpu_out/).
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
timeout "${RESOURCES_SECONDS:-130}" python benchmarks/recipe_resources.py --device cuda --steps 10 --warmup 3 \
    > "$OUT/recipe_resources.txt" 2>&1
echo "recipe_resources exit $?" >> "$OUT/recipe_resources.txt"
timeout "${STUDY_SECONDS:-380}" python benchmarks/study.py --profile scale --out "${SCALE_DIR:-/tmp/scale}" \
    --device cuda --only q1 q2 --settings "kspace R=4" "pixels p=0.8" "kspace R=8" "pixels p=0.6" \
    --time-budget "${STUDY_BUDGET:-230}" > "$OUT/scale.log" 2>&1
echo "study exit $?" >> "$OUT/scale.log"
for item in results.md results.json figures cache; do
    [ -e "${SCALE_DIR:-/tmp/scale}/$item" ] && cp -r "${SCALE_DIR:-/tmp/scale}/$item" "$OUT/"
done
exit 0
