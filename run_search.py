"""BudgetNAS command line: describe a genome, search for one under a budget, reproduce a winner.

Exit codes: 0 success; 1 ``--describe`` found the genome over the given limits; 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import textwrap
import time
from contextlib import nullcontext

__all__ = ["main", "build_parser"]


from blocks.genome import BudgetNASError


class UsageError(BudgetNASError):
    """Bad command-line input: printed as one line, exit code 2."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _seed_count(text: str) -> str:
    return text if text == "auto" else str(_positive_int(text))


AUTO_SEEDS = 3  # --seeds auto: the first round
# --quick: what it changes from the defaults (measured in BENCHMARKS.md, "The quick path").
QUICK = {"trials": 16, "train_subset": 15000, "epochs": 5, "final_top": 1, "final_epochs": 6, "seeds": "3"}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("budgetnas")
    except PackageNotFoundError:
        return "(not installed)"


def _workers(text: str) -> str:
    return text if text == "auto" else str(_positive_int(text))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit code 2 (argparse prints usage too)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _help_width() -> int:
    """The width of --help's closing paragraphs: the terminal's (``COLUMNS``), at most 100."""
    import shutil

    return max(40, min(100, shutil.get_terminal_size((100, 24)).columns - 2))


def build_parser() -> argparse.ArgumentParser:
    from reports.verdict import VERDICT_RULE
    from search.ranking import FINALS_RULE, RANK_RULE

    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] not in ("", "-c") else "run_search.py"
    parser = _Parser(
        prog=prog,
        description="Find tiny CNNs under a hard budget (params, receptive field, MACs, RAM, flash).",
        epilog="examples:\n"
               f"  {prog} --budget 8000 --target 99.4 --data-dir ../shared/data\n"
               f"  {prog} --dataset my_images/ --budget 2000 --target 98\n"
               f"  {prog} --describe zoo/mnist_5k_search.json --budget 8000\n"
               f"  {prog} --reproduce runs/mnist-b8000/leaderboard.csv --rank 1 --seeds 5 --seed-offset 100\n"
               + "".join("\n" + textwrap.fill(text, _help_width(), subsequent_indent="  ") + "\n" for text in (
                   f"ranking (leaderboard, top 10): {RANK_RULE}.",
                   f"finalists: {FINALS_RULE}.",
                   f"verdict of --target on the test set (final evaluation): {VERDICT_RULE}.")),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = parser.add_argument_group("modes")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    mode.add_argument("--describe", metavar="GENOME",
                      help="print the layer table, totals and verdict of a genome (.json file or compact string)")
    mode.add_argument("--json", action="store_true", help="with --describe: print one JSON object instead")
    mode.add_argument("--reproduce", metavar="SOURCE",
                      help="retrain a leaderboard row (CSV + --rank/--trial), a genome .json or a compact string "
                           "over --seeds on the full training set and report test accuracy")
    mode.add_argument("--report", metavar="RUN_DIR", help="(re)write report.html and report.md of a run directory")
    mode.add_argument("--finalize", action="store_true",
                      help="only run the final evaluation of an existing study (same flags as the search)")

    final = parser.add_argument_group("final evaluation and reproduction")
    final.add_argument("--rank", type=_positive_int, help="with --reproduce CSV: the leaderboard rank (default 1)")
    final.add_argument("--trial", type=int, help="with --reproduce CSV: the trial number instead of a rank")
    final.add_argument("--seeds", type=_seed_count, default=None, metavar="N|auto",
                       help="training seeds of the final evaluation and --reproduce: K..K+N-1; auto: 3, then one more "
                            "per worker at a time, up to --max-seeds, while a finalist's verdict against --target is "
                            "open (default: auto with --target, else 3)")
    final.add_argument("--max-seeds", type=_positive_int, default=10, help="with --seeds auto: the most seeds a "
                                                                          "finalist gets (default 10)")
    final.add_argument("--seed-offset", type=int, default=0, metavar="K",
                       help="the first of --seeds (default 0); e.g. --seed-offset 100 checks a claim on seeds the "
                            "search never used")
    final.add_argument("--checkpoint", metavar="PATH",
                       help="with --reproduce: evaluate this checkpoint on the test set instead of training")
    final.add_argument("--export", choices=["onnx", "tflite"],
                       help="with --reproduce: also write model.onnx (needs the [onnx] extra) or model.int8.tflite "
                            "(int8, measured in TensorFlow Lite Micro; needs the [mcu] extra), of --checkpoint or of "
                            "the retrained models")
    final.add_argument("--final-top", type=int, default=3, metavar="K",
                       help="after a search, retrain at most K finalists (chosen as below) on the full training set "
                            "and score them on the test set (default 3; 0 = skip)")
    final.add_argument("--final-epochs", type=_positive_int, default=15, help="epochs of the final evaluation "
                                                                             "(default 15)")

    search = parser.add_argument_group("search (the default mode)")
    search.add_argument("--dataset", metavar="NAME|PATH",
                        help="mnist (default), fashion-mnist, cifar10, or your own data: a folder "
                             "(train/<class>/*.png, optional test/<class>/) or a .npz (x_train, y_train, optional "
                             "x_test, y_test, class_names); --reproduce of a leaderboard: the study's dataset")
    search.add_argument("--image-size", metavar="HxW", help="resize your own images to HxW once, at load")
    search.add_argument("--metric", choices=["accuracy", "balanced"],
                        help="what --target, the ranking and the verdict use: accuracy (default) or balanced (the "
                             "mean of the classes' recalls: with imbalanced classes, a model that never predicts a "
                             "rare class still scores high accuracy); --reproduce of a leaderboard: the study's")
    search.add_argument("--channels", choices=["auto", "gray", "rgb"],
                        help="your own images: auto (default: three channels when any image is in colour, else one; "
                             "the plan says which and why), gray (colour converted by luma: a grey sensor pays for "
                             "one channel) or rgb; --reproduce of a leaderboard: the study's")
    search.add_argument("--augment", choices=["auto", "none", "affine", "crop", "cropflip"], default="auto",
                        help="training augmentation: auto (default) = affine rotation for MNIST-like data, crop + "
                             "flip for CIFAR-10, none for your own data (what keeps its labels is yours to say); "
                             "none; affine (small rotations); crop (shifts of up to 1/8 of the side); cropflip "
                             "(shifts and horizontal flips)")
    search.add_argument("--translate", type=float, metavar="PX",
                        help="with the affine augmentation: also shift each training image by up to PX pixels per "
                             "axis (default 0; e.g. 2 on 28x28 digits); --reproduce of a leaderboard: the study's")
    search.add_argument("--data-dir", default="data", help="dataset root; downloaded there when missing (default ./data)")
    search.add_argument("--target", type=float, metavar="ACC",
                        help="accuracy in percent: once designs reach it on validation, the search sizes its "
                             "proposals below the smallest of them, to find the smallest that meets it; in the final "
                             "evaluation, the test accuracy over the seeds gets a verdict (below)")
    search.add_argument("--stop-at-target", action="store_true", help="stop at the first trial that meets --target")
    search.add_argument("--trials", type=_positive_int, default=50,
                        help="trained trials (rejected proposals don't count; default 50)")
    search.add_argument("--timeout", type=float, metavar="SECONDS", help="stop starting trials after this long")
    search.add_argument("--epochs", type=_positive_int,
                        help="full training epochs of a trial that survives the pruner (default 15), or of "
                             "--reproduce (default 15)")
    search.add_argument("--min-epochs", type=_positive_int, default=1,
                        help="epochs at the pruner's first rung (default 1); a third go on at each rung "
                             "(1, 3, 9, ... epochs)")
    search.add_argument("--rungs", default="separate",
                        help="separate (default): each rung is its own short run with its own lr schedule (1 and 3 "
                             "epochs before a 15-epoch run), which ranks designs better (BENCHMARKS.md, proxy "
                             "validity); inline: the rungs are epochs of the one full-length run (cheaper)")
    search.add_argument("--enqueue", nargs="+", metavar="GENOME",
                        help="warm starts evaluated first: genome .json files, compact strings, or a leaderboard "
                             ".csv (its top 3); designs already in the study are not trained again")
    search.add_argument("--sampler", default="tpe", help="tpe (default), evolution (aging evolution), nsga2 (accuracy up, "
                        "params down) or random")
    search.add_argument("--pruner", default="sha",
                        help="sha (default: successive halving over epochs), median, hyperband or none")
    search.add_argument("--storage", metavar="URL",
                        help="Optuna storage URL (default: sqlite file under --out/<study>/)")
    search.add_argument("--study", help="study name (default <dataset>-b<budget>); the same name resumes it")
    search.add_argument("--workers", type=_workers, default="auto", metavar="N|auto",
                        help="local worker processes; auto (default) = one single-threaded worker per core on CPU "
                             "(capped by free memory), one per GPU")
    search.add_argument("--device", default="auto", help="auto (default: cuda, then mps, then cpu), cuda, mps or cpu")
    search.add_argument("--seed", type=int, default=0, help="sampler and training seed (default 0)")
    search.add_argument("--out", default="runs", help="output directory (default runs/)")
    search.add_argument("--train-subset", type=_positive_int, metavar="N",
                        help="train each trial on N training images only (cheap proxy search)")
    search.add_argument("--tune-hparams", action="store_true", help="also search lr, weight decay, batch size, "
                                                                   "label smoothing")
    search.add_argument("--no-repair", action="store_true",
                        help="reject over-budget proposals instead of scaling their widths down to the budget")
    search.add_argument("--quick", action="store_true",
                        help="a first tested model in about 8 minutes on a 2-core CPU: " + ", ".join(
                            f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items())
                             + " (flags you give win)")
    search.add_argument("--quiet", action="store_true",
                        help="print only warnings, errors and the ending (the headline, the files, what next)")
    search.add_argument("--dry-run", action="store_true",
                        help="print the plan, the estimate and the first proposals' params, RF, MACs and RAM, then "
                             "exit: no study is created, nothing is trained")
    search.add_argument("--no-retry-interrupted", action="store_true",
                        help="a trial stopped by Ctrl-C or SIGTERM stays failed (default: the next run trains its "
                             "genome again, as it does for a killed worker's trial)")

    limits = parser.add_argument_group("limits")
    limits.add_argument("--budget", type=_positive_int, metavar="PARAMS", help="maximum trainable parameters")
    limits.add_argument("--min-rf", metavar="PIXELS|auto",
                        help="minimum receptive field of the last feature map; 'auto' = input size")
    limits.add_argument("--max-macs", type=_positive_int, metavar="MACS",
                        help="maximum multiply-accumulates per image")
    limits.add_argument("--max-ram", type=_positive_int, metavar="BYTES",
                        help="maximum peak activation memory for one image at inference (see --precision)")
    limits.add_argument("--max-flash", type=_positive_int, metavar="BYTES",
                        help="maximum flash bytes: at int8 (default) the estimated .tflite file, at fp32 4 bytes a "
                             "weight")
    limits.add_argument("--precision", choices=["int8", "fp32"],
                        help="bytes per value for --max-ram / --max-flash and their columns (analytic; int8 when "
                             "not given, as deployed on a microcontroller). Only when given as int8 are the "
                             "finalists also quantized to int8, run in TensorFlow Lite Micro, judged on their int8 "
                             "test accuracy and checked on the measured arena and flatbuffer bytes (needs the [mcu] "
                             "extra); --reproduce --export tflite does it for one design")
    return parser


def _limits(args: argparse.Namespace):
    from budgets import Limits, parse_min_rf

    try:
        min_rf = parse_min_rf(args.min_rf)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return Limits(max_params=args.budget, min_rf=min_rf, max_macs=args.max_macs, max_ram=args.max_ram,
                  max_flash=args.max_flash, precision=args.precision or "int8")


def _device(name: str) -> str:
    """A valid and available ``--device``."""
    from training import resolve_device

    if name not in ("auto", "cuda", "mps", "cpu"):
        raise UsageError(f"unknown --device {name!r}; choose from auto, cuda, mps, cpu")
    try:
        resolve_device(name)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return name


def _image_size(image_size: str | None, dataset: str) -> str | None:
    """``--image-size``, which resizes the user's own images only: refused beside a built-in dataset."""
    return _own_data_only("--image-size", image_size, dataset, "of fixed size")


def _channels(channels: str | None, dataset: str) -> str:
    """``--channels``, for the user's own images only: refused beside a built-in dataset."""
    return _own_data_only("--channels", channels, dataset, "with fixed channels") or "auto"


def _own_data_only(flag: str, value: str | None, dataset: str, fixed: str) -> str | None:
    from training.userdata import is_user_dataset

    if value is not None and not is_user_dataset(dataset):
        raise UsageError(f"{flag} {value}: applies to your own images (--dataset PATH); {dataset} is a built-in "
                         f"dataset {fixed}, so drop {flag}")
    return value


def _dataset(name: str) -> str:
    """A built-in dataset's name, or the absolute path of the user's own data (workers and resumes find it)."""
    from pathlib import Path

    from training import DATASETS
    from training.userdata import is_user_dataset

    if not name.strip():
        raise UsageError("--dataset needs a name or a path, got an empty string")
    if is_user_dataset(name):
        if not Path(name).exists():
            raise UsageError(f"--dataset {name}: no such file or folder")
        return str(Path(name).resolve())
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}, or the path of your own data "
                         "(an image folder or a .npz file)")
    return name


def _checked_data(settings, console):
    """The search's data, loaded and checked once before the study is created (a bad dataset is one line, and no
    study, calibration or worker follows); its facts are printed as the plan's data line."""
    from training import TrainConfig, augmentation, load_splits

    splits = load_splits(settings.dataset, settings.data_dir, device="cpu", val_size=settings.val_size,
                         image_size=settings.image_size, channels=settings.channels)
    spec = splits.spec
    mode, _ = augmentation(TrainConfig(augment=settings.augment), splits)
    _check_translate(settings.translate_px, mode)
    names = ", ".join(splits.classes[:6]) + (", ..." if len(splits.classes) > 6 else "")
    console.print(f"data: {spec.channels}x{spec.height}x{spec.width}, {spec.classes} classes ({names}); "
                  f"{len(splits.train_y):,} train / {len(splits.val_y):,} validation / {len(splits.test_y):,} test"
                  + (f"; {splits.layout}" if splits.layout else "") + f"; augment {mode}"
                  + ((" (auto: only you know which transformations keep your labels; see --augment)"
                      if splits.user_data and mode == "none" else " (auto)") if settings.augment == "auto" else "")
                  + (f", shifts up to {settings.translate_px:g} px" if settings.translate_px else ""),
                  markup=False, highlight=False)
    from reports.summary import make_console

    for warning in [*splits.warnings, *_small_validation(len(splits.val_y))]:
        make_console(loud=True).print(f"warning: {warning}", style="yellow", markup=False, highlight=False)
    return splits


SMALL_VALIDATION = 1000  # images: below this the plan says what one validation image is worth


def _small_validation(images: int) -> list[str]:
    """A warning for a validation split too small to tell designs apart finely."""
    from search.ranking import noise_band

    if not 0 < images < SMALL_VALIDATION:
        return []
    return [f"the validation split has {images:,} images: one image is {100 / images:.2f} points, and accuracies "
            f"within one standard error (about {noise_band(95.0, images):.1f} points at 95%) count as ties, which go "
            "to fewer params; the search's best validation accuracy is biased upwards, so trust the test verdict"]


def _check_translate(translate_px: float, mode: str, recipe_of: str | None = None) -> None:
    if translate_px and mode != "affine":
        where, fix = (f"{recipe_of}'s recipe: translate_px", "--translate 0") if recipe_of else ("--translate", "drop --translate")
        raise UsageError(f"{where} {translate_px:g}: shifts belong to the affine augmentation, and this run's "
                         f"is {mode}; add --augment affine, or {fix}")


def _worker_count(requested: str, device: str, log) -> int:
    """``--workers`` resolved and capped to what this machine runs well (one line says so when capped)."""
    from search.settings import cpu_worker_cap
    from training import resolve_device

    resolved = resolve_device(device)
    if resolved.type == "cuda":
        import torch
        cap, why = torch.cuda.device_count(), f"{torch.cuda.device_count()} GPU(s), one worker each"
    elif resolved.type == "mps":
        cap, why = 1, "one MPS device"
    else:
        cap, why = cpu_worker_cap()
    if requested == "auto":
        return cap
    count = int(requested)
    if count > cap:
        log(f"--workers {count} capped to {cap} ({why})")
        return cap
    return count


def _plan(settings, args: argparse.Namespace, splits, trained: int = 0):
    """The plan of this command, with per-epoch times measured on a few steps of designs from the space."""
    import torch

    from search.plan import Plan, calibrate, expected_epochs
    from search.space import random_designs
    from training import resolve_device

    device = resolve_device(settings.device)
    spec, train_images, test_images = splits.spec, len(splits.train_y) + len(splits.val_y), len(splits.test_y)
    search_images = min(settings.train_subset or len(splits.train_y), len(splits.train_y))
    threads = torch.get_num_threads()
    worker_threads = settings.threads_per_worker if device.type == "cpu" and settings.threads_per_worker else threads
    torch.set_num_threads(worker_threads)
    designs = random_designs(spec, [settings.limits] * 2, seed=settings.seed)
    per_image = sum(calibrate(g, spec, device) for g in designs) / len(designs)
    torch.set_num_threads(threads)
    search_s = per_image * (search_images + len(splits.val_y) / 3)  # a forward pass: about a third of a step
    final_s = per_image * (train_images + test_images / 3)
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"{device.type}, {worker_threads} thread(s) per worker")
    return Plan(max(settings.trials - trained, 0), expected_epochs(settings.pruner, settings.min_epochs, settings.epochs,
                                                                    settings.rungs), search_s,
                settings.workers, args.final_top * len(_seeds(args)), args.final_epochs, final_s, name, trained,
                settings.timeout, args.final_top * (_max_seeds(args) or 0) or None)


def _warm_starts(sources: list[str], dataset: str, spec) -> list:
    """Genomes of ``--enqueue`` sources (files, strings, leaderboard CSVs' top 3), checked against the data's ``spec``."""
    from blocks import load_genome
    from reports.leaderboard import read_leaderboard
    from training import check_genome_fits

    genomes = []
    for source in sources:
        if source.endswith(".csv"):
            try:
                board = read_leaderboard(source)
            except ValueError as e:
                raise UsageError(f"--enqueue: {e}") from None
            texts = board[board["rank"].notna()].sort_values("rank")["genome"].head(3)
            genomes += [load_genome(text) for text in texts]
        else:
            genomes.append(load_genome(source))
    for genome in genomes:
        check_genome_fits(genome, spec, dataset)
    return genomes


def _require_int8(genome, source: str) -> None:
    """``--precision int8`` / ``--export tflite``: refuse, before any training, a genome TFLM cannot run in int8."""
    from budgets.tflm import int8_problems

    problems = int8_problems(genome)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UsageError(f"{source}: does not run in int8 under TensorFlow Lite Micro: {problems[0]}{more}")


def _seeds(args: argparse.Namespace) -> list[int]:
    """The final evaluation's training seeds (``--seeds auto``: its first round) from ``--seed-offset``."""
    if not 0 <= args.seed_offset < 2 ** 31:
        raise UsageError(f"--seed-offset must be in [0, 2**31), got {args.seed_offset}")
    count = AUTO_SEEDS if args.seeds == "auto" else int(args.seeds)
    return list(range(args.seed_offset, args.seed_offset + count))


def _max_seeds(args: argparse.Namespace) -> int | None:
    """``--max-seeds`` when racing (``--seeds auto`` with a target), else None."""
    if args.seeds != "auto" or args.target is None:
        return None
    if args.max_seeds < AUTO_SEEDS:
        raise UsageError(f"--max-seeds {args.max_seeds} is below the {AUTO_SEEDS} seeds --seeds auto starts with")
    return args.max_seeds


def _device_type(name: str) -> str:
    from training import resolve_device

    return resolve_device(name).type


def _check_modes(args: argparse.Namespace) -> None:
    """One mode at a time, no empty mode argument, and options only where they mean something."""
    given = [f"--{name}" for name in ("describe", "reproduce", "report") if getattr(args, name) is not None]
    if args.finalize:
        given.append("--finalize")
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)} are separate modes; give one")
    for name in ("describe", "reproduce", "report"):
        value = getattr(args, name)
        if value is not None and not value.strip():
            raise UsageError(f"--{name} needs a value, got an empty string")
    if args.reproduce is not None and args.seeds == "auto":
        raise UsageError("--seeds auto races a search's finalists against its --target; give --reproduce a number of "
                         "seeds (say --seeds 5)")
    _seeds(args), _max_seeds(args)  # --seed-offset and --max-seeds checked before anything runs
    if args.rank is not None and args.trial is not None:
        raise UsageError("--rank and --trial both pick a leaderboard row; give one")
    for option, needs in (("json", "describe"), ("checkpoint", "reproduce"), ("rank", "reproduce"),
                          ("trial", "reproduce"), ("export", "reproduce")):
        if getattr(args, option) not in (None, False) and getattr(args, needs) is None:
            raise UsageError(f"--{option} only applies with --{needs}")


def _source_name(source: str) -> str:
    return source if source.endswith(".json") else "genome string"


def _describe(args: argparse.Namespace) -> int:
    from blocks import GenomeError, load_genome
    from budgets import analyze, check
    from reports.summary import render_summary

    genome = load_genome(args.describe)
    try:
        analysis = analyze(genome)
    except GenomeError as e:
        raise e.with_source(_source_name(args.describe)) from None
    verdict_limits = _limits(args)
    verdict = check(genome, verdict_limits)
    if args.json:
        print(json.dumps({**analysis.to_dict(), "ram_bytes": verdict.ram, "flash_bytes": verdict.flash,
                          "precision": verdict_limits.precision, "violations": list(verdict.violations),
                          "ok": verdict.ok}))
    else:
        render_summary(analysis, verdict, _limits(args))
    return 0 if verdict.ok else 1


def _start_process_server(args: argparse.Namespace) -> None:
    """When worker processes will come (``--workers`` not 1 on a multi-core machine), start the server they fork
    from now (``training.parallel.process_context``), so that its imports run beside this command's own."""
    from search.settings import WORKER_MODULES, cpu_worker_cap

    if args.workers != "1" and cpu_worker_cap()[0] > 1:
        from training.parallel import start_process_server

        start_process_server(preload=WORKER_MODULES)


def _search(args: argparse.Namespace) -> int:
    if not args.dry_run:
        _start_process_server(args)
    from reports.final import finalize
    from reports.html import write_report
    from reports.leaderboard import LeaderboardWriter, top_table, write_leaderboard
    from reports.runfiles import atomic_write, load_finals
    from reports.summary import make_console
    from search.interrupts import acknowledge_lost, raise_if_lost
    from search.recovery import fail_orphans
    from search.runner import enqueue_genomes, run_search, trained_count
    from search.settings import SearchSettings, open_study, redact, study_exists

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own lines say what happened to each trial
    limits = _limits(args)
    if args.budget is None and args.max_macs is None and args.max_ram is None and args.max_flash is None:
        raise UsageError("give a limit to search under: --budget PARAMS (and/or --max-macs, --max-ram, --max-flash)")
    if args.final_top < 0:
        raise UsageError(f"--final-top must be >= 0, got {args.final_top}")
    console = make_console()
    dataset = _dataset(args.dataset or "mnist")
    settings = SearchSettings(
        budget=args.budget, min_rf=limits.min_rf, max_macs=args.max_macs, max_ram=args.max_ram,
        max_flash=args.max_flash, precision=args.precision or "int8", int8_finals=args.precision == "int8",
        target=args.target,
        dataset=dataset, data_dir=args.data_dir, image_size=_image_size(args.image_size, dataset),
        channels=_channels(args.channels, dataset), metric=args.metric or "accuracy",
        augment=args.augment, translate_px=args.translate or 0.0, trials=args.trials, timeout=args.timeout,
        epochs=args.epochs or 15, min_epochs=args.min_epochs, rungs=args.rungs, sampler=args.sampler,
        pruner=args.pruner,
        storage=args.storage, study=args.study,
        workers=_worker_count(args.workers, _device(args.device), console.print), device=args.device, seed=args.seed,
        out=args.out,
        train_subset=args.train_subset, tune_hparams=args.tune_hparams, repair=not args.no_repair,
        stop_at_target=args.stop_at_target, retry_interrupted=not args.no_retry_interrupted)
    if settings.metric == "balanced" and settings.int8_finals:
        raise UsageError("--metric balanced with --precision int8: the int8 model is judged in TensorFlow Lite Micro "
                         "on plain accuracy only; drop one of them")
    if args.quick and args.study is None:  # a quick run is not resumed by a full one, nor the other way round
        settings.study += "-quick"
    load_finals(settings.run_dir)  # a damaged finals.json is named now, not after the search
    if args.finalize and not study_exists(settings):
        raise UsageError(f"--finalize: no study {settings.study!r} in {redact(settings.storage_url)}; "
                         "check --study / --out / --storage")
    if settings.int8_finals and args.final_top > 0 and not args.dry_run:
        from reports.tflite import require_mcu

        require_mcu()  # before the study: the finals need it
    started = time.monotonic()
    splits = _checked_data(settings, console)
    settings.val_images = len(splits.val_y)  # small data has fewer than --val-size: the ranking's noise band
    if not args.finalize:
        _require_reachable(settings, splits.spec)
    warm_starts = _warm_starts(args.enqueue or [], settings.dataset, splits.spec)
    if settings.int8_finals:
        for genome in warm_starts:
            _require_int8(genome, f"--enqueue {genome.hash}")
    where = (f"(a run would keep it in {redact(settings.storage_url)})" if args.dry_run
             else f"in {redact(settings.storage_url)}")
    console.print(f"study {settings.study} {where}: {settings.limits.describe()}, "
                  f"{settings.trials} trials x {settings.epochs} epochs, sampler {settings.sampler}, "
                  f"pruner {settings.pruner} ({settings.rungs} rungs), {settings.workers} worker(s)"
                  + (", metric balanced (the mean of the classes' recalls)" if settings.metric == "balanced" else ""))
    if args.dry_run:
        from search.settings import check_storage_folder

        check_storage_folder(settings)  # as the real run would
        return _dry_run(settings, args, splits, warm_starts, console)
    study = _guarded(settings, lambda: open_study(settings))  # the one study object of this command
    _guarded(settings, lambda: fail_orphans(study, console.print))  # a killed run's trials are not "trained"
    resumed = study.get_trials(deepcopy=False)
    if resumed:
        statuses = [t.user_attrs.get("status") if t.state.name != "FAIL" else "failed" for t in resumed]
        console.print(f"resuming study {settings.study}: {trained_count(resumed)} trained, "
                      f"{statuses.count('rejected')} rejected, {statuses.count('failed')} failed, "
                      f"{statuses.count('pruned')} pruned")
    if warm_starts and not args.finalize:
        queued = enqueue_genomes(study, warm_starts, console.print, settings.limits)
        console.print(f"--enqueue: {queued} design(s) queued to be evaluated first")
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    spec = splits.spec
    atomic_write(settings.run_dir / "settings.json", json.dumps(
        {**settings.to_dict(), "input": f"{spec.channels}x{spec.height}x{spec.width}", "classes": splits.classes,
         "data_layout": splits.layout or None}, indent=1))

    display = _live_display(console, settings)

    def print_plan() -> None:  # while the worker processes start
        plan = _plan(settings, args, splits, trained_count(resumed))
        for line in plan.lines():
            console.print(line)
        if display is not None:
            display.set_plan(plan.search_seconds, plan.seconds - plan.search_seconds)
        raise_if_lost()

    code = 0
    try:
        if not args.finalize:
            here = splits.subset(settings.train_subset, seed=settings.seed) if _device_type(settings.device) == "cpu" else None
            with display or nullcontext():
                _guarded(settings, lambda: run_search(settings, study, callbacks=[LeaderboardWriter(settings)],
                                                      on_started=print_plan, splits=here, display=display))
        raise_if_lost()
        if args.final_top:
            finals_display = _live_display(console, settings)
            planned = args.final_top * (_max_seeds(args) or len(_seeds(args))) * args.final_epochs
            with finals_display or nullcontext():
                if finals_display is not None:
                    finals_display.start_finals(planned, settings.workers)
                _guarded(settings, lambda: finalize(
                    study, settings, write_leaderboard(study, settings), args.final_top, args.final_epochs,
                    _seeds(args), log=finals_display.log if finals_display else console.print,
                    max_seeds=_max_seeds(args), on_final=lambda finals: write_leaderboard(study, settings, finals),
                    processes=settings.workers,
                    on_progress=finals_display.final_epoch if finals_display else None))
    except KeyboardInterrupt as e:
        acknowledge_lost()
        code = 143 if isinstance(e, _Terminated) else 130
        console.print(f"{'terminated' if code == 143 else 'interrupted'}: completed trials are kept in the study; "
                      "writing the leaderboard and report")
    df = _guarded(settings, lambda: write_leaderboard(study, settings))
    narrow = console.width < 160
    if df["rank"].isna().all():
        console.print(f"study {settings.study}: no trial has finished its training yet, so there is no top 10")
    else:
        console.print(top_table(df, 10, title=f"Top 10 of study {settings.study} (ranked as --help says)",
                                genome_chars=max(console.width - 70, 16) if narrow else None))
    if narrow and df["rank"].notna().any():
        console.print("genomes shortened to fit the terminal: full ones in leaderboard.csv")
    from search.plan import format_duration
    from training import resolve_device

    html_path, _ = write_report(settings.run_dir, df, run_info={
        "wall time of this command": format_duration(time.monotonic() - started),
        "device": f"{resolve_device(settings.device)}, {settings.workers} worker(s)"})
    console.print(f"leaderboard: {settings.run_dir / 'leaderboard.csv'}   report: {html_path}")
    from reports.html import ending

    loud = make_console(loud=True)  # the ending is printed under --quiet too
    for i, line in enumerate(ending(settings.run_dir, df)):
        loud.print(line, style="bold" if i == 0 else None, markup=False, highlight=False)
    return code


REACHABLE_PROBES = 200


def _require_reachable(settings, spec) -> None:
    """Refuse limits no design of the space can meet, before the study: a search would reject proposal after proposal
    (``max_rejections_in_a_row`` of them) before it stopped."""
    from search.space import reachable

    ok, closest = reachable(spec, settings.limits, REACHABLE_PROBES, seed=settings.seed)
    if not ok:
        raise UsageError(f"no design of the search space fits {settings.limits.describe()}: of {REACHABLE_PROBES} random "
                         f"designs narrowed to fit, the closest still has {closest}; loosen that limit "
                         "(--describe FILE shows where a design's bytes go)")


def _live_display(console, settings):
    """The live status lines (``search.live``) on a terminal; None into a file or pipe, or under CI, where the log
    lines alone are written."""
    from training.engine import progress_enabled

    if not progress_enabled():
        return None
    from search.live import SearchDisplay

    return SearchDisplay(console, settings.workers, settings.trials)


DRY_RUN_PROPOSALS = 5


def _dry_run(settings, args: argparse.Namespace, splits, warm_starts: list, console) -> int:
    """``--dry-run``: the plan, its estimate and the first proposals' costs, as worker 0 of a new study would draw
    them; no study is created and no trial trained (the estimate times a few steps on random images)."""
    import optuna

    from budgets import check
    from search.runner import trained_count
    from search.settings import make_sampler, study_exists
    from search.descent import size_range
    from search.space import narrow_to_limits, sample_genome

    trained = 0
    if study_exists(settings):
        trained = trained_count(optuna.load_study(study_name=settings.study, storage=settings.storage_url)
                                .get_trials(deepcopy=False))
        console.print(f"the study exists: a run would resume it ({trained} trained)")
    for line in _plan(settings, args, splits, trained).lines():
        console.print(line)
    probe = optuna.create_study(sampler=make_sampler(settings.sampler, settings.seed))
    proposals = [("queued", narrow_to_limits(g, settings.limits) or g) for g in warm_starts]
    span = size_range(settings.budget, settings.target)  # the first proposals' (``search.descent``)
    proposals += [("sampled", sample_genome(probe.ask(), splits.spec, settings.limits, repair=settings.repair,
                                            span=span).genome) for _ in range(DRY_RUN_PROPOSALS)]
    if span is not None:
        console.print(f"sizes: {span.why}: proposals fitted to {span.low:,}-{span.high:,} params"
                      + (" until designs meet the target, then below the smallest that does" if settings.target else ""))
    console.print(f"first proposals (sampler {settings.sampler}, seed {settings.seed}; RAM at {settings.precision}):")
    for kind, genome in proposals:
        verdict = check(genome, settings.limits)
        console.print(f"  {kind}: {verdict.params:,} params, RF {verdict.receptive_field}, {verdict.macs:,} MACs, "
                      f"RAM {verdict.ram:,} B" + ("" if verdict.ok else f", rejected: {'; '.join(verdict.violations)}"),
                      markup=False, highlight=False)
        console.print(f"    {genome.to_string()}", markup=False, highlight=False, soft_wrap=True)
    console.print("dry run: no study was created and no trial trained")
    return 0


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} %"


def _reproduce(args: argparse.Namespace) -> int:
    if not args.checkpoint:  # the seeds' runs train side by side
        _start_process_server(args)
    from budgets import analyze, check
    from reports.export import load_checkpoint, non_finite_parameters
    from reports.reproduce import reproduce, resolve_source
    from reports.summary import make_console, render_summary
    from training import DATASETS, check_genome_fits, evaluate, load_splits, resolve_device

    int8 = args.export == "tflite" or args.precision == "int8"
    if args.export == "onnx":  # every export's packages before anything trains
        from reports.export import require_onnx

        require_onnx()
    if int8:
        from reports.tflite import require_mcu

        require_mcu()
    device = _device(args.device)
    source = resolve_source(args.reproduce, rank=args.rank, trial=args.trial)
    if int8:
        _require_int8(source.genome, _source_name(args.reproduce))
    dataset = _dataset(args.dataset or source.dataset or "mnist")
    if dataset in DATASETS:  # a built-in dataset's shape is known before its files are read
        check_genome_fits(source.genome, DATASETS[dataset].spec, dataset)
    if args.checkpoint:
        model, checkpoint = load_checkpoint(args.checkpoint, source.genome)  # refuses another genome's weights
    full = load_splits(dataset, args.data_dir, device=resolve_device(device), val_size=0,
                       image_size=_image_size(args.image_size or source.image_size, dataset),
                       channels=_channels(args.channels or (source.channels if source.channels != "auto" else None),
                                          dataset))
    check_genome_fits(source.genome, full.spec, dataset)
    from_recipe = args.translate is None
    translate_px = source.translate_px if from_recipe else args.translate
    if not args.checkpoint:
        from training import TrainConfig, augmentation
        from training.shift import MAX_SHIFT_PX, is_shift

        if not is_shift(translate_px):
            raise UsageError(f"--translate is a shift in pixels in [0, {MAX_SHIFT_PX}], got {translate_px}")
        _check_translate(translate_px, augmentation(TrainConfig(augment=args.augment), full)[0],
                         args.reproduce if from_recipe else None)
    console = make_console()
    if translate_px and not args.checkpoint:
        from_where = f"the recipe of {args.reproduce}" if from_recipe else "--translate"
        console.print(f"training with shifts of up to {translate_px:g} px beside the rotation ({from_where})")
    render_summary(analyze(source.genome), check(source.genome, _limits(args)), _limits(args), console)
    if args.checkpoint:
        bad = non_finite_parameters(model)
        if bad:
            console.print(f"[yellow]warning: {args.checkpoint} holds NaN or inf in {len(bad)} tensor(s) "
                          f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}); its accuracy is meaningless[/]")
        loss, acc = evaluate(model.to(full.device), full.test_x, full.test_y, full.mean, full.std,
                             metric=args.metric or source.metric)
        console.print(f"checkpoint {args.checkpoint}: test loss {loss:.4f}, test accuracy {acc:.2f}%")
        from pathlib import Path

        out_dir = Path(args.out) / source.name
        if args.export == "onnx":
            from reports.export import export_onnx

            normalize = (checkpoint.get("train_config") or {}).get("normalize") or {"mean": full.mean, "std": full.std}
            out_dir.mkdir(parents=True, exist_ok=True)
            export_onnx(model, source.genome, out_dir / "model.onnx", normalize["mean"], normalize["std"], full.classes)
            console.print(f"written: {out_dir / 'model.onnx'}")
        if int8:
            from reports.final import checkpoint_int8

            checkpoint_int8(model, source.genome, checkpoint, acc, full, out_dir, console.print)
            console.print(f"written: {out_dir / 'model.int8.tflite'}, model.int8.json and the firmware sources "
                          "(model_data.cc / .h, model_ops.h, model_example.cc; docs/deploy.md)")
        return 0
    seeds = _seeds(args)
    target = args.target if args.target is not None else source.target
    final, out_dir = reproduce(source, seeds=seeds, epochs=args.epochs or 15, full=full, augment=args.augment,
                               translate_px=translate_px, metric=args.metric or source.metric, device=device,
                               out=args.out, log=console.print,
                               require_onnx=args.export == "onnx",
                               processes=_worker_count(args.workers, device, console.print), int8=int8,
                               target=target, on_int8=args.precision == "int8")
    summary = final.summary(target, args.precision == "int8")
    console = make_console(loud=True)  # the ending is printed under --quiet too
    if len(final.final_accs) > 1:
        console.print(f"[bold]{source.name}: {final.params:,} params, test accuracy {final.mean:.2f} ± {final.std:.2f} % "
                      f"(min {final.min:.2f} %, 95% lower bound {_percent(summary['test_acc_low'])}) over seeds {seeds}[/]")
    else:  # no spread and no bound from one seed
        console.print(f"[bold]{source.name}: {final.params:,} params, test accuracy {final.mean:.2f} % on seed "
                      f"{seeds[0]} (one seed: no spread, no bound; --seeds 5 gives both)[/]")
    if final.int8:
        console.print(f"[bold]int8 in TensorFlow Lite Micro: {summary['int8_test_acc_mean']:.2f} % (min "
                      f"{summary['int8_test_acc_min']:.2f} %), arena {summary['arena_bytes']:,} B, flatbuffer "
                      f"{summary['tflite_bytes']:,} B[/]")
    if target is not None:
        console.print(f"[bold]target {target}% ({summary['judged_on']} test accuracy): {summary['meets_target']} "
                      f"({summary['seeds_at_target']:.0%} of seeds at or above it)[/]")
    console.print(f"written: {out_dir}/ ({', '.join(sorted(p.name for p in out_dir.iterdir() if p.is_file()))})")
    first = out_dir / f"checkpoint_seed{seeds[0]}.pt"
    if target is not None and summary["meets_target"] != "certain":
        console.print(f"next: {summary['meets_target']} is not certain: more seeds (--seeds 10) narrow the bound, or "
                      "a larger design (a search with a larger --budget) raises the mean", markup=False)
    elif not final.int8:
        console.print(f"next: deploy it: --export tflite --checkpoint {first} (int8, measured in TensorFlow Lite "
                      "Micro, with the firmware sources), or model.py / model.onnx as they are; docs/deploy.md",
                      markup=False)
    else:
        console.print("next: flash it: model_data.cc / .h, model_ops.h and model_example.cc; docs/deploy.md",
                      markup=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick:  # the preset's values, where the user did not give the flag
        given = _given_flags(argv)
        for name, value in QUICK.items():
            if name not in given:
                setattr(args, name, value)
    if args.seeds is None:  # racing needs a target to race against, and --reproduce takes a number
        args.seeds = "auto" if args.target is not None and args.reproduce is None else "3"
    os.environ.setdefault("MPLBACKEND", "Agg")  # plots only ever go to report files
    if args.quiet:
        from search.console import QUIET_ENV

        os.environ[QUIET_ENV] = "1"  # this process and the workers it starts
    previous, previous_int = signal.signal(signal.SIGTERM, _terminate), signal.getsignal(signal.SIGINT)
    from search.interrupts import keep_signals

    keep_signals()  # a Ctrl-C whose exception a finalizer swallowed is raised again at the next safe point
    try:
        _check_modes(args)
        if args.describe is not None:
            return _describe(args)
        if args.reproduce is not None:
            return _reproduce(args)
        if args.report is not None:
            from reports.html import write_report
            try:
                html_path, md_path = write_report(args.report)
            except ValueError as e:
                raise UsageError(str(e)) from None
            print(f"written: {html_path} and {md_path}")
            return 0
        return _search(args)
    except BudgetNASError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:  # outside a search (which handles it itself): one line, no traceback
        print(f"{parser.prog}: {'terminated' if isinstance(e, _Terminated) else 'interrupted'}", file=sys.stderr)
        return 143 if isinstance(e, _Terminated) else 130
    except OSError as e:  # a full disk, a read-only folder: name the file
        print(f"{parser.prog}: error: {_os_reason(e)}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def _given_flags(argv: list[str] | None) -> set[str]:
    """The destinations of the flags on the command line (whatever their value, the default's included)."""
    probe = build_parser()
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    return set(vars(probe.parse_args(sys.argv[1:] if argv is None else argv)))


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (the current trial is failed, results are written), exit code 143."""


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated()


def _os_reason(e: OSError) -> str:
    return f"cannot write {e.filename}: {e.strerror or e}" if e.filename else f"{type(e).__name__}: {e}"


def _guarded(settings, step):
    """Run ``step()``; a failure of the storage anywhere in it becomes one line naming the storage, exit code 1
    (``search.settings.storage_failure``)."""
    from search.settings import storage_failure

    try:
        return step()
    except Exception as e:  # (an OSError, say a full disk writing a CSV, is main()'s one line)
        failure = storage_failure(e, settings.storage_url)
        if failure is None:
            raise
        raise failure from None


def cli() -> None:
    """The command: ``main()``, then exit at once (see ``_exit_now``)."""
    _exit_now(main())


def _exit_now(code: int) -> None:
    """Exit with ``code`` without the interpreter's teardown, which took 1-2 s after every command that had
    imported torch, pandas and matplotlib. Everything is written by then (worker processes joined, files
    closed, the study's transactions committed); the log and the output streams are flushed here, and what a
    failure's traceback kept alive is collected (a worker queue's semaphores, which the resource tracker would
    otherwise report as leaked)."""
    import gc
    import logging

    gc.collect()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can reach it
            pass
    os._exit(code)


if __name__ == "__main__":
    cli()
