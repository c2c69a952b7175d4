"""The analytic int8 RAM and flash held to TensorFlow Lite Micro's measurement (issue 27).

For the zoo and for random genomes covering every block kind (at least ``--per-kind`` genomes containing each),
build the model (random weights, and BatchNorm statistics drawn away from the identity, as a trained
model's are: a standalone BN with identity statistics folds away in conversion and would hide its cost), export it to int8 TFLite
(``reports.tflite.export_int8``, calibrated on random images) and record, one JSON line per genome as it comes in:
the analytic int8 RAM (``budgets.check``) and flash (params), TFLM's arena (the smallest that runs, found by
bisection; and the recording allocator's total, head = planned tensors, tail = persistent), the flatbuffer's bytes, the operators, or why it did not convert. Resumes: genomes already in
the output file are skipped.

    python benchmarks/bench_int8.py --out benchmarks/results/int8/measured.jsonl
    python benchmarks/bench_int8.py --summary benchmarks/results/int8/measured.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from blocks import BLOCK_TYPES, Genome, InputSpec, build_model, load_genome  # noqa: E402
from blocks.random_genome import random_genome  # noqa: E402
from budgets import Limits, check  # noqa: E402

ZOO = sorted((Path(__file__).resolve().parents[1] / "zoo").glob("*.json"))


def kinds(genome: Genome) -> set[str]:
    return {layer.type for layer in genome.layers}


def covering_genomes(per_kind: int, seed: int = 0, pool: int = 3000) -> list[Genome]:
    """Random genomes (28x28x1 and 32x32x3 inputs) that ``--precision int8`` accepts, chosen greedily until every
    block kind appears in at least ``per_kind`` of them."""
    rng = random.Random(seed)
    specs = (InputSpec(1, 28, 28, 10), InputSpec(3, 32, 32, 10))
    from budgets.tflm import int8_problems

    candidates = [random_genome(rng, specs[i % 2]) for i in range(pool)]
    candidates = [g for g in candidates if not int8_problems(g)]  # the others are refused (the factors show why)
    need = {kind: per_kind for kind in BLOCK_TYPES}
    chosen = []
    while any(need.values()) and candidates:
        best = max(candidates, key=lambda g: sum(need[k] > 0 for k in kinds(g)))
        if not any(need[k] > 0 for k in kinds(best)):
            break
        candidates.remove(best)
        chosen.append(best)
        for k in kinds(best):
            need[k] = max(0, need[k] - 1)
    return chosen


def factor_genomes() -> list[tuple[str, Genome]]:
    """One factor at a time on a small base net: each activation, unit order, block kind and head."""
    from blocks import ACTIVATIONS

    base = "i1x28x28n10-conv_c8_k3{u}-max_k2-conv_c8_k3{u}-gap-conv_c10_k1_oc"
    out = [("base", base.format(u=""))]
    out += [(f"act {a}", base.format(u=f"_a{a}")) for a in ACTIVATIONS if a != "relu"]
    out += [(f"order {o}", base.format(u=f"_o{o}")) for o in ("cab", "ca", "cb", "c", "bac", "acb")]
    body = "i1x28x28n10-conv_c8_k3-{b}-gap-conv_c10_k1_oc"
    for name, block in (("dws", "dws_c12"), ("dws stride 2", "dws_c12_s2_psame"), ("res", "res_c8"),
                        ("res projection", "res_c12"), ("res stride 2", "res_c12_s2"), ("res cab", "res_c8_ocab"),
                        ("res bac", "res_c8_obac"), ("avg", "avg_k2"), ("avg k3 p1", "avg_k3_p1"),
                        ("max k3 p1", "max_k3_p1"), ("conv stride 2 same", "conv_c8_k3_s2_psame"),
                        ("conv stride 2 p1", "conv_c8_k3_s2_p1"), ("conv p1", "conv_c8_k3_p1"),
                        ("conv dilation 2", "conv_c8_k3_d2"), ("conv depthwise", "conv_c8_k3_gdw"),
                        ("conv groups 2", "conv_c8_k3_g2"), ("conv k5 same", "conv_c8_k5_psame"),
                        ("dropout", "conv_c8_k3_r0.1"), ("dropout cabd", "conv_c8_k3_ocabd_r0.1")):
        out.append((name, body.format(b=block)))
    out += [("first avg", "i1x28x28n10-avg_k2-conv_c8_k3-gap-conv_c10_k1_oc"),
            ("head conv gap", "i1x28x28n10-conv_c8_k3-max_k2-conv_c10_k1_oc-gap"),
            ("head flat fc", "i1x28x28n10-conv_c8_k3-max_k2-flat-fc_c10"),
            ("head flat fc fc cba", "i1x28x28n10-conv_c8_k3-max_k2-flat-fc_c16_ocba-fc_c10"),
            ("lsm", "i1x28x28n10-conv_c8_k3-max_k2-conv_c8_k3-gap-conv_c10_k1_oc-lsm"),
            ("rgb", "i3x32x32n10-conv_c8_k3-max_k2-conv_c8_k3-gap-conv_c10_k1_oc")]
    return [(f"factor/{name}", Genome.from_string(text)) for name, text in out]


def measure(genome: Genome, name: str) -> dict:
    from reports.tflite import arena_breakdown, arena_bytes, export_int8, operators

    limits = Limits(precision="int8")
    verdict = check(genome, limits)
    row = {"name": name, "genome": genome.to_string(), "hash": genome.hash, "kinds": sorted(kinds(genome)),
           "params": verdict.params if hasattr(verdict, "params") else None, "analytic_ram": verdict.ram,
           "analytic_flash": verdict.flash}
    torch.manual_seed(0)
    model = build_model(genome).eval()
    for module in model.modules():  # statistics like a trained model's: identity ones fold away in conversion
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            with torch.no_grad():
                module.running_mean.normal_(0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
    spec = genome.input
    calibration = torch.randn(32, spec.channels, spec.height, spec.width)
    started = time.perf_counter()
    try:
        int8 = export_int8(model, genome, calibration)
    except Exception as e:  # the reason is the result
        row.update(converts=False, reason=str(e)[:300], seconds=round(time.perf_counter() - started, 1))
        return row
    ops = operators(int8.flatbuffer)
    try:
        arena = arena_breakdown(int8.flatbuffer)
    except Exception as e:
        row.update(converts=False, reason=f"TFLM cannot run it ({e}); operators: {' '.join(ops)}",
                   operators=ops, seconds=round(time.perf_counter() - started, 1))
        return row
    row.update(converts=True, arena_bytes=arena_bytes(int8.flatbuffer), arena_recorded=arena["total"],
               arena_head=arena.get("head"), arena_tail=arena.get("tail"),
               tflite_bytes=int8.tflite_bytes, operators=ops, io=[int8.input_dtype, int8.output_dtype],
               float_ops=sorted({"DEQUANTIZE"} & set(ops)) and True,
               seconds=round(time.perf_counter() - started, 1))
    return row


def summary(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    ok = [r for r in rows if r["converts"]]
    print(f"{len(rows)} genomes, {len(ok)} convert, {len(rows) - len(ok)} do not")
    for r in rows:
        if not r["converts"]:
            print(f"  does not convert: {r['name']} {r['genome']}: {r['reason'][:160]}")
    per_kind = Counter(k for r in rows for k in r["kinds"])
    print("genomes containing each kind:", dict(sorted(per_kind.items())))
    for what, analytic, measured in (("RAM", "analytic_ram", "arena_bytes"), ("flash", "analytic_flash", "tflite_bytes")):
        ratios = [r[measured] / max(r[analytic], 1) for r in ok]
        under = sum(r[analytic] < r[measured] for r in ok)
        print(f"{what}: measured / analytic median {statistics.median(ratios):.2f}, min {min(ratios):.2f}, "
              f"max {max(ratios):.2f}; analytic under the measurement for {under} of {len(ok)}")
    for r in ok:
        if r["name"].startswith("zoo/"):
            print(f"  {r['name']}: RAM {r['analytic_ram']:,} vs arena {r['arena_bytes']:,} (head {r['arena_head']:,},"
                  f" tail {r['arena_tail']:,}); flash {r['analytic_flash']:,} vs flatbuffer {r['tflite_bytes']:,}")


def _rows(paths: list[Path]) -> list[dict]:
    """Measured rows that TFLM ran in int8 (not refused by ``budgets.tflm.int8_problems``)."""
    from budgets.tflm import int8_problems

    rows = [json.loads(line) for path in paths for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["converts"] and not int8_problems(Genome.from_string(r["genome"]))]


def _features(row: dict, what: str) -> list[float]:
    from budgets import totals

    t = totals(Genome.from_string(row["genome"]))
    return [1.0, t.tflm_tensors if what == "arena" else t.stored_params, t.operators, t.channels]


def envelope(rows: list[dict], what: str) -> list[float]:
    """Non-negative coefficients of the linear upper envelope (never below a measurement) with the least total
    slack: a linear program."""
    from scipy.optimize import linprog

    target = "arena_bytes" if what == "arena" else "tflite_bytes"
    X = [_features(r, what) for r in rows]
    y = [r[target] for r in rows]
    cost = [sum(column) for column in zip(*X)]  # sum of the estimates; the measurements are constants
    fixed = [(1.0, 1.0) if what == "flatbuffer" else (0, None)]  # params count once each, as int8 weights
    bounds = [(0, None), (1.0, None) if what == "arena" else fixed[0], (0, None), (0, None)]
    result = linprog(cost, A_ub=[[-v for v in row] for row in X], b_ub=[-v for v in y], bounds=bounds)
    if not result.success:
        raise RuntimeError(result.message)
    return [round(float(c), 3) for c in result.x]


def fit(paths: list[Path]) -> None:
    """The estimates' coefficients: the envelope of all measurements, scaled up by the worst miss on genomes held out
    of a first fit (a margin for designs not measured); then measured / estimate over all of them."""
    rows = _rows(paths)
    random_rows = [r for r in rows if r["name"].startswith("random/")]
    held = random_rows[1::2]
    fitting = [r for r in rows if r not in held]
    print(f"{len(rows)} measured genomes that run in int8; fit on {len(fitting)}, check on {len(held)} held out")
    for what, target in (("arena", "arena_bytes"), ("flatbuffer", "tflite_bytes")):
        estimate = lambda cs, r: sum(c * f for c, f in zip(cs, _features(r, what)))  # noqa: E731
        first = envelope(fitting, what)
        misses = [estimate(first, r) / r[target] for r in held]
        print(f"{what} held out: coefficients {first}; estimate / measured on {len(held)}: median "
              f"{statistics.median(misses):.2f}, min {min(misses):.3f}, max {max(misses):.2f}; "
              f"under: {sum(m < 1 for m in misses)}")
        margin = max(1.0, 1 / min(misses))
        final = [round(c * margin, 3) for c in envelope(rows, what)]
        ratios = [r[target] / estimate(final, r) for r in rows]
        print(f"{what} final: coefficients {final} (margin x{margin:.3f}); measured / estimate on {len(rows)}: "
              f"lowest {min(ratios):.2f}, median {statistics.median(ratios):.2f}, highest {max(ratios):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/int8/measured.jsonl"))
    parser.add_argument("--per-kind", type=int, default=30)
    parser.add_argument("--summary", type=Path, help="print the summary of a results file and exit")
    parser.add_argument("--fit", type=Path, nargs="+", help="fit the estimates' coefficients to results files")
    parser.add_argument("--factors", action="store_true", help="one factor at a time (activation, order, block, "
                                                               "head) instead of the zoo and random genomes")
    args = parser.parse_args()
    if args.summary:
        summary(args.summary)
        return
    if args.fit:
        fit(args.fit)
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = {json.loads(line)["name"] for line in args.out.read_text().splitlines() if line.strip()} \
        if args.out.exists() else set()
    if args.factors:
        todo = factor_genomes()
    else:
        todo = [(f"zoo/{p.name}", load_genome(str(p))) for p in ZOO]
        todo += [(f"random/{i}", g) for i, g in enumerate(covering_genomes(args.per_kind))]
    print(f"{len(todo)} genomes, {len(done)} already measured", flush=True)
    for name, genome in todo:
        if name in done:
            continue
        row = measure(genome, name)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{name}: " + (f"RAM {row['analytic_ram']:,} -> arena {row['arena_bytes']:,}; flash "
                             f"{row['analytic_flash']:,} -> {row['tflite_bytes']:,} ({row['seconds']} s)"
                             if row["converts"] else f"does not convert: {row['reason'][:120]}"), flush=True)


if __name__ == "__main__":
    main()
