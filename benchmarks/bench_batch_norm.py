"""Batch norm's training cost on CPU by channel count and layout: PyTorch's channels_last kernel and channel counts.

    python benchmarks/bench_batch_norm.py                         # 1 thread, (128, C, 28, 28), C = 8 ... 24
    python benchmarks/bench_batch_norm.py --threads 2 --size 14

For each channel count, ``nn.BatchNorm2d`` in training mode on a (batch, C, size, size) map: forward alone and
forward + backward, channels_last and NCHW, next to a ReLU of the same map (one pass over memory: the floor an
elementwise op can reach). Best of 3 rounds of ``--repeat`` calls, milliseconds. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import timeit


def best_ms(fn, repeat: int) -> float:
    """Best mean milliseconds per call of ``fn`` over 3 rounds of ``repeat`` calls, after one untimed call."""
    fn()
    return min(timeit.repeat(fn, number=repeat, repeat=3)) / repeat * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, nargs="+", default=[8, 10, 12, 14, 16, 18, 22, 24])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    print(f"nn.BatchNorm2d, training mode, ({args.batch}, C, {args.size}, {args.size}), {args.threads} thread(s), "
          f"ms (best of 3 x {args.repeat}); torch {torch.__version__}")
    print("C | CL forward | CL fwd+bwd | CL relu | NCHW forward | NCHW fwd+bwd | NCHW relu")
    for channels in args.channels:
        row = []
        for channels_last in (True, False):
            x = torch.randn(args.batch, channels, args.size, args.size)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            x.requires_grad_()
            grad = torch.randn_like(x)
            norm = torch.nn.BatchNorm2d(channels)

            def forward():
                with torch.no_grad():
                    norm(x)

            row += [best_ms(forward, args.repeat), best_ms(lambda: norm(x).backward(grad), args.repeat),
                    best_ms(lambda: torch.relu(x.detach()), args.repeat)]
        print(f"{channels} | " + " | ".join(f"{ms:.2f}" for ms in row), flush=True)


if __name__ == "__main__":
    main()
