#!/bin/bash
set -u
cd /work/bench
PY=/work/main/.venv/bin/python
OUT=/work/bench/runs/owndata
DATA=$OUT/coloured_mnist_24_digits0147_4000.npz
log() { echo "[$(date +%T)] $*" | tee -a $OUT/progress.log; }
for spec in "new-b1500-top3 1500" "new-b2500 2500" "new-b8000 8000"; do
  set -- $spec
  log "finalize $1 with the 1.25x step rule and the real validation size"
  $PY run_search.py --dataset $DATA --out $OUT --study $1 --budget $2 --target 97.5 --finalize > $OUT/$1-refinalize2.log 2>&1
done
log "done refinalize"
