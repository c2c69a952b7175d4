#!/bin/bash
# The main command as a new user runs it: defaults, fresh runs/, no --enqueue.
cd "$(dirname "$0")/../../.."
. .venv/bin/activate
echo "start $(date -u +%FT%TZ)"
start=$(date +%s)
COLUMNS=120 python run_search.py --budget 8000 --target 99.4 --data-dir ../shared/data
rc=$?
echo "end $(date -u +%FT%TZ) rc=$rc wall_s=$(( $(date +%s) - start ))"
