"""Benchmark: course_lib's scaled_dot_product_attention vs PyTorch's fused kernel.

Forward + backward at B=8, H=8, d_head=64, T in {128, 512}, float32, CPU, with
no mask and with a causal mask. Each measurement is the median of several
runs after a warm-up. The course's version is the textbook formula written
with plain tensor ops (scale q, matmul, mask, softmax, matmul); PyTorch's
``F.scaled_dot_product_attention`` picks a fused (flash-attention style) CPU
kernel. Target: ratio (course / torch) <= 1.5.

Also reported, for the lesson: the same attention with the course's
step-by-step ``course_lib.softmax.softmax`` instead of ``torch.softmax``
(identical numbers, slower, see the docstring of
``course_lib.attention.scaled_dot_product_attention``).

Allocator: the table is printed twice. First with glibc's default malloc, which serves every
block over 32 MB with a fresh ``mmap`` and hands it back with ``munmap`` when freed, so each
(8, 8, 512, 512) float32 tensor of scores or weights (64 MB) page-faults again on its first
touch; the fused kernel never materialises them. Then with freed memory kept for reuse
(``mallopt``, the same as ``MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824``
in the environment). Under each table a line gives the measured cost: one fill of a fresh
64 MB tensor against one fill of a reused one. On the 2-core CI VMs the fresh fill costs
several times the reused one, and that, not the arithmetic, is what separates the course's
attention from PyTorch's at T=512 with the default allocator.

Run:  python bench/attention.py [--allocator both|default|reuse] [--threads N]
      (about a minute on 2 cores)
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from course_lib import attention as A  # noqa: E402
from course_lib.softmax import softmax as course_softmax  # noqa: E402

B, H, DH = 8, 8, 64
LENGTHS = (128, 512)
WARMUP = 2
REPEATS = {128: 31, 512: 9}  # more runs where a run is short: steadier medians
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, glibc's <malloc.h>


def textbook_sdpa(q, k, v, mask=None):
    """The course attention, but with the step-by-step course softmax."""
    scores = A.attention_scores(q, k)  # (B, H, T, T)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return course_softmax(scores, dim=-1) @ v


def course_sdpa(q, k, v, mask=None):
    return A.scaled_dot_product_attention(q, k, v, mask=mask)


def torch_sdpa(q, k, v, mask=None):
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def fwd_bwd_seconds(fns, T: int, causal: bool) -> list[float]:
    """Median seconds of one forward + backward pass for each function in ``fns``.

    The functions take turns inside each repeat, so a burst of load from
    other processes slows them all alike instead of biasing one ratio.
    """
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, H, T, DH, generator=g, requires_grad=True) for _ in range(3))
    grad_out = torch.randn(B, H, T, DH, generator=g)
    mask = A.causal_mask(T) if causal else None
    times: list[list[float]] = [[] for _ in fns]
    for i in range(WARMUP + REPEATS[T]):
        for fn, ts in zip(fns, times):
            q.grad = k.grad = v.grad = None
            t0 = time.perf_counter()
            fn(q, k, v, mask).backward(grad_out)
            if i >= WARMUP:
                ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]


def reuse_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed blocks (up to 1 GiB) for reuse instead of returning them.

    Returns False where that is not possible (not glibc, e.g. macOS): the caller says so.
    """
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, 1 << 30)) and bool(mallopt(M_TRIM_THRESHOLD, 1 << 30))


def fill_ms(T: int = 512, repeats: int = 9) -> tuple[float, float]:
    """Median ms to fill a fresh (B, H, T, T) float32 tensor once, and to fill a reused one."""
    fresh, reused = [], []
    buffer = torch.empty(B, H, T, T)
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.empty(B, H, T, T).fill_(1.0)  # allocated, touched, freed
        fresh.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        buffer.fill_(1.0)
        reused.append(time.perf_counter() - t0)
    return statistics.median(fresh) * 1e3, statistics.median(reused) * 1e3


def table(allocator: str) -> None:
    header = (f"{'T':>5} {'mask':>7} | {'torch ms':>9} | {'course ms':>10} {'ratio':>6} | "
              f"{'textbook ms':>12} {'ratio':>6}")
    print(f"\nallocator: {allocator}")
    print(header)
    print("-" * len(header))
    for T in LENGTHS:
        for causal in (False, True):
            t_ref, t_course, t_text = fwd_bwd_seconds([torch_sdpa, course_sdpa, textbook_sdpa], T, causal)
            print(f"{T:>5} {'causal' if causal else 'none':>7} | {t_ref * 1e3:>9.1f} | "
                  f"{t_course * 1e3:>10.1f} {t_course / t_ref:>6.2f} | "
                  f"{t_text * 1e3:>12.1f} {t_text / t_ref:>6.2f}")
    fresh, reused = fill_ms()
    print(f"one fill of a 64 MB (B, H, 512, 512) tensor: fresh {fresh:.1f} ms, reused {reused:.1f} ms "
          f"({fresh / reused:.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument("--allocator", choices=["both", "default", "reuse"], default="both",
                        help="malloc's default, freed memory reused, or both tables (default)")
    args = parser.parse_args()
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"attention forward+backward, B={B} H={H} d_head={DH}, float32, CPU, "
          f"{torch.get_num_threads()} threads, median of {REPEATS} runs (by T) after {WARMUP} warm-up")
    if args.allocator in ("both", "default"):
        table("malloc's default (blocks over 32 MB: a fresh mmap each time)")
    if args.allocator in ("both", "reuse"):
        if reuse_freed_memory():
            table("freed memory reused (mallopt M_MMAP_THRESHOLD = M_TRIM_THRESHOLD = 1 GiB)")
        else:
            print("\nallocator: cannot change it here (not glibc): no reuse table")
    print("\nratio = time / torch time; course = course_lib.attention (target <= 1.5),")
    print("textbook = same formula with the step-by-step course softmax and masked_fill(-inf)")


if __name__ == "__main__":
    main()
