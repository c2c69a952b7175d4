#!/bin/bash
# Issue 26 item 5 and issue 27's int8 drop: each zoo design retrained on seeds the search never used
# (3..3+N-1, 15 epochs, full training set), then int8 in TFLM on the whole test set. Needs the [mcu] extra.
# Run it from a separate `git worktree` (a long run must not see the sources change under it):
#   PYTHON=/path/to/python RESULTS=$PWD/benchmarks/results/zoo_restate benchmarks/results/zoo_restate/run.sh [design:seeds ...]
# cifar10_dws needs CIFAR-10, which is not reachable here; it runs on coloured MNIST at 32x32 instead
# (benchmarks/bench_your_data.py's recipe: 12,000 train / 2,000 test digits, random background and stroke colours).
cd "$(dirname "$0")/../../.."
RESULTS=${RESULTS:-benchmarks/results/zoo_restate}
mkdir -p "$RESULTS"
for item in ${@:-mnist_3k6_search:5 mnist_3k2_search:5 mnist_4k_search:5 mnist_8k_gap:5 mnist_8k_search:2 lenet5:1 cifar10_dws:1}; do
  design=${item%%:*}; seeds=${item##*:}
  data=(--data-dir ../shared/data)
  if [ "$design" = cifar10_dws ]; then
    npz=runs/zoo_restate/coloured_mnist_32.npz
    [ -f $npz ] || PYTHONPATH=. ${PYTHON:-python} -c "
import sys; sys.path.insert(0, 'benchmarks'); from pathlib import Path; Path('runs/zoo_restate').mkdir(parents=True, exist_ok=True)
from bench_your_data import write_coloured_mnist; write_coloured_mnist(Path('$npz'), '../shared/data', 12000, 2000, 32)"
    data=(--dataset $npz)
  fi
  echo "== $design seeds 3..$((2 + seeds)) start $(date -u +%FT%TZ)" | tee -a "$RESULTS/run.log"
  start=$(date +%s)
  COLUMNS=120 PYTHONPATH=. ${PYTHON:-python} run_search.py --reproduce zoo/$design.json --seeds $seeds --seed-offset 3 \
    --epochs 15 --export tflite "${data[@]}" --device cpu --workers 2 --out runs/zoo_restate > "$RESULTS/$design.log" 2>&1
  rc=$?
  echo "== $design end $(date -u +%FT%TZ) rc=$rc wall_s=$(( $(date +%s) - start ))" | tee -a "$RESULTS/run.log"
  cp runs/zoo_restate/$design/summary.json "$RESULTS/$design.summary.json" 2>/dev/null
done
