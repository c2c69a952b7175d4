#!/bin/bash
# The main command's ranks 2 and 3 (its final evaluation crashed in rank 1, whose three seeds had finished; see
# BENCHMARKS.md): the same retraining as the final evaluation (full training set, 15 epochs, seeds 0-2) through
# --reproduce of the run's leaderboard. Run from a separate git worktree; LEADERBOARD and RESULTS are absolute paths.
cd "$(dirname "$0")/../../.."
for rank in 2 3; do
  echo "== rank $rank start $(date -u +%FT%TZ)" | tee -a "$RESULTS/finals_ranks_2_3.log"
  start=$(date +%s)
  COLUMNS=120 ${PYTHON:-python} run_search.py --reproduce "$LEADERBOARD" --rank $rank --seeds 3 --epochs 15 \
    --data-dir ../shared/data --device cpu --workers 2 --out runs/main_finals > "$RESULTS/finals_rank$rank.log" 2>&1
  echo "== rank $rank end $(date -u +%FT%TZ) rc=$? wall_s=$(( $(date +%s) - start ))" | tee -a "$RESULTS/finals_ranks_2_3.log"
done
