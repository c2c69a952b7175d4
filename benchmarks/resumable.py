"""Long benchmarks as many small runs: one JSON per finished run, shards for parallel processes, resume."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

Job = TypeVar("Job")


def add_arguments(parser: argparse.ArgumentParser, out: str) -> None:
    """The flags every resumable benchmark has."""
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--out", default=out, help="folder of the per-run JSON files")
    parser.add_argument("--shard", default="0/1", help="K/N: run every N-th run starting at K (parallel processes)")
    parser.add_argument("--table", action="store_true", help="print the Markdown summary of finished runs and exit")


def pending(jobs: Iterable[tuple[str, Job]], out: Path, shard: str) -> Iterator[tuple[Path, Job]]:
    """(path, job) for this shard's jobs whose JSON does not exist yet; ``jobs`` yields (file stem, job)."""
    k, n = (int(v) for v in shard.split("/"))
    out.mkdir(parents=True, exist_ok=True)
    for i, (stem, job) in enumerate(jobs):
        path = out / f"{stem}.json"
        if i % n == k and not path.exists():
            yield path, job


def save(path: Path, run: dict) -> None:
    """Write atomically, so a killed benchmark never leaves half a result."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(run, indent=1))
    tmp.replace(path)
