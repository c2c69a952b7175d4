#!/bin/bash
# Issue 36, own-data case: 4 MNIST digits (0,1,4,7) coloured, 24x24 RGB, 4,000 train (3,600 + 400 validation), 1,000 test.
set -u
cd /work/bench
PY=/work/main/.venv/bin/python
OUT=/work/bench/runs/owndata
mkdir -p $OUT
log() { echo "[$(date +%T)] $*" | tee -a $OUT/progress.log; }
log "A: new default, --budget 8000 --target 97.5"
$PY benchmarks/bench_your_data.py coloured-mnist --digits 0,1,4,7 --size 24 --train 4000 --test 1000 --out $OUT -- \
  --budget 8000 --target 97.5 --study new-b8000 > $OUT/new-b8000.log 2>&1
log "B: direct small-budget search, --budget 1500 --target 97.5 --final-top 1"
$PY benchmarks/bench_your_data.py coloured-mnist --digits 0,1,4,7 --size 24 --train 4000 --test 1000 --out $OUT -- \
  --budget 1500 --target 97.5 --final-top 1 --study new-b1500 > $OUT/new-b1500.log 2>&1
log "done"
log "C: before (7d2fdb9), --budget 8000 --target 97.5"
cd /work/before
$PY run_search.py --dataset $OUT/coloured_mnist_24_digits0147_4000.npz --out $OUT --budget 8000 --target 97.5 \
  --study old-b8000 > $OUT/old-b8000.log 2>&1
log "done C"
cd /work/bench
log "D: direct search, --budget 2500 --target 97.5"
$PY benchmarks/bench_your_data.py coloured-mnist --digits 0,1,4,7 --size 24 --train 4000 --test 1000 --out $OUT -- \
  --budget 2500 --target 97.5 --study new-b2500 > $OUT/new-b2500.log 2>&1
log "E: direct search, --budget 1500 --target 97.5 (default --final-top 3)"
$PY benchmarks/bench_your_data.py coloured-mnist --digits 0,1,4,7 --size 24 --train 4000 --test 1000 --out $OUT -- \
  --budget 1500 --target 97.5 --study new-b1500-top3 > $OUT/new-b1500-top3.log 2>&1
log "done D E"
