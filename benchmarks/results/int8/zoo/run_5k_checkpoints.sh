#!/bin/bash
# Needs the [mcu] extra (PYTHON=... to pick an interpreter). int8 in TFLM of the 4,404-param design's five trained checkpoints (seeds 3-7, from the zoo re-statement).
cd "$(dirname "$0")/../../../.."
for seed in 3 4 5 6 7; do
  echo "== seed $seed"
  PYTHONPATH=. ${PYTHON:-python} run_search.py --reproduce zoo/mnist_5k_search.json \
    --checkpoint ${CHECKPOINTS:-/tmp/zoo}/mnist_5k_search/checkpoint_seed$seed.pt --export tflite --data-dir ../shared/data \
    --device cpu --out runs/zoo_int8/seed$seed 2>&1 | grep -E "checkpoint|int8|written"
done
