#!/bin/bash
# One quick-path run, timed, each line stamped with seconds since start: benchmarks/results/quick/quick_N.log.
#   benchmarks/results/quick/run_quick.sh N [extra flags, e.g. --seed 1]
# Run it alone on the machine, from a checkout whose sources nothing edits meanwhile (a git worktree).
cd "$(dirname "$0")/../../.."
n=$1; shift
out=/tmp/quick$n
rm -rf $out
{ time ${PYTHON:-python} run_search.py --quick --budget 8000 --target 99.4 --data-dir ../shared/data --out $out "$@"; } 2>&1 \
  | ${PYTHON:-python} -u -c "import sys, time; t = time.time(); [print(f'[{time.time() - t:7.1f}] {line}', end='', flush=True) for line in sys.stdin]" \
  | tee benchmarks/results/quick/quick_$n.log
