"""Two single-threaded training processes side by side vs one alone, with and without the allocator setting.

    python benchmarks/bench_two_processes.py --data-dir ../shared/data --steps 150

Each process trains ``--genome`` for ``--steps`` timed engine steps (batch 128, one thread, after 10
warm-up steps) and reports images/s and page faults per step (``ru_minflt``). Layouts: one process
alone, then two at once; each with glibc's default allocator behaviour and with the engine's
``keep_freed_memory`` (which a CPU ``Trainer`` turns on; the default rows switch it off first).
This is what a two-worker search does on a two-core machine, without the search around it.
Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(data_dir: str, genome_path: str, steps: int, keep: bool) -> dict:
    """One process's training steps (``bench_pipeline.engine_run``): images/s and page faults per step."""
    import torch

    import training.engine
    from benchmarks.bench_pipeline import engine_run
    from blocks import load_genome
    from training import TrainConfig, load_splits

    torch.set_num_threads(1)
    if not keep:
        training.engine._allocator_kept = False  # glibc's default: the Trainer leaves the allocator alone
    splits = load_splits("mnist", data_dir, device=torch.device("cpu"))
    rate, faults = engine_run(splits, load_genome(genome_path), TrainConfig(device="cpu", epochs=5), steps, 10)
    return {"images_per_s": rate, "faults_per_step": faults}


def side_by_side(commands: list[list[str]]) -> list[dict]:
    """Run ``commands`` at once; each child prints a JSON object as its last line, returned in order."""
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT) for command in commands]
    outputs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit("a child process failed")
    return [json.loads(out.strip().splitlines()[-1]) for out in outputs]


def run(args: argparse.Namespace, processes: int, keep: bool) -> list[dict]:
    command = [sys.executable, __file__, "--child", "--data-dir", args.data_dir, "--genome", args.genome,
               "--steps", str(args.steps), "--keep", str(int(keep))]
    return side_by_side([command] * processes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--genome", default=str(ROOT / "zoo" / "mnist_8k_gap.json"))
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--keep", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.data_dir, args.genome, args.steps, bool(args.keep))), flush=True)
        return
    print(f"{Path(args.genome).name}, {args.steps} steps of batch 128 per process, 1 thread each")
    print("| allocator | processes | images/s per process | images/s in all | page faults per step | vs one alone, "
          "glibc default |\n| --- | ---: | --- | ---: | --- | ---: |")
    base = None
    for keep in (False, True):
        for processes in (1, 2):
            results = run(args, processes, keep)
            total = sum(r["images_per_s"] for r in results)
            base = base or total
            rates = " + ".join(f"{r['images_per_s']:,.0f}" for r in results)
            faults = " / ".join(f"{r['faults_per_step']:,.0f}" for r in results)
            allocator = "kept (keep_freed_memory)" if keep else "glibc default"
            print(f"| {allocator} | {processes} | {rates} | {total:,.0f} | {faults} | {total / base:.2f}x |",
                  flush=True)


if __name__ == "__main__":
    main()
