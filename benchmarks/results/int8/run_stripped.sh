#!/bin/bash
# Needs the [mcu] extra (PYTHON=... to pick an interpreter). The int8 measurements again after export_int8 began
# stripping the flatbuffer's strings (issue 29): factors, then the zoo and the random genomes (now with shared blocks).
cd "$(dirname "$0")/../../.."
PYTHONPATH=. ${PYTHON:-python} benchmarks/bench_int8.py --factors --out benchmarks/results/int8/stripped/factors.jsonl
PYTHONPATH=. ${PYTHON:-python} benchmarks/bench_int8.py --out benchmarks/results/int8/stripped/measured.jsonl
