#!/bin/bash
# Needs the [mcu] extra (PYTHON=... to pick an interpreter). The int8 measurements of BENCHMARKS.md "int8 on the device": factors, then the zoo and the random genomes.
cd "$(dirname "$0")/../../.."
PYTHONPATH=. ${PYTHON:-python} benchmarks/bench_int8.py --factors --out benchmarks/results/int8/factors.jsonl
PYTHONPATH=. ${PYTHON:-python} benchmarks/bench_int8.py --out benchmarks/results/int8/measured.jsonl
