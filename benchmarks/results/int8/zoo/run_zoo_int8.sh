#!/bin/bash
# Needs the [mcu] extra (PYTHON=... to pick an interpreter). The int8 accuracy drop of each MNIST zoo design:
# one seed the search never used (3), 15 epochs on the full training set, int8 in TFLM on the whole test set.
# Designs given as arguments (default: all MNIST ones). cifar10_dws needs CIFAR-10, which is not reachable here.
cd "$(dirname "$0")/../../../.."
for design in ${@:-mnist_4k_search mnist_3k6_search mnist_3k2_search mnist_8k_gap lenet5}; do
  echo "== $design $(date -u +%FT%TZ)"
  PYTHONPATH=. ${PYTHON:-python} run_search.py --reproduce zoo/$design.json --seeds 1 --seed-offset 3 --epochs 15 \
    --export tflite --data-dir ../shared/data --device cpu --workers 1 --out runs/zoo_int8 2>&1 \
    | grep -E "Epoch 15|int8|params, test"
  cp runs/zoo_int8/$design/summary.json benchmarks/results/int8/zoo/$design.summary.json 2>/dev/null
done
