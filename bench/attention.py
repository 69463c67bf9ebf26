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

Run:  python bench/attention.py          (about a minute on 2 cores)
"""

from __future__ import annotations

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


def main() -> None:
    torch.manual_seed(0)
    print(f"attention forward+backward, B={B} H={H} d_head={DH}, float32, CPU, "
          f"{torch.get_num_threads()} threads, median of {REPEATS} runs (by T) after {WARMUP} warm-up")
    header = (f"{'T':>5} {'mask':>7} | {'torch ms':>9} | {'course ms':>10} {'ratio':>6} | "
              f"{'textbook ms':>12} {'ratio':>6}")
    print(header)
    print("-" * len(header))
    for T in LENGTHS:
        for causal in (False, True):
            t_ref, t_course, t_text = fwd_bwd_seconds([torch_sdpa, course_sdpa, textbook_sdpa], T, causal)
            print(f"{T:>5} {'causal' if causal else 'none':>7} | {t_ref * 1e3:>9.1f} | "
                  f"{t_course * 1e3:>10.1f} {t_course / t_ref:>6.2f} | "
                  f"{t_text * 1e3:>12.1f} {t_text / t_ref:>6.2f}")
    print("ratio = time / torch time; course = course_lib.attention (target <= 1.5),")
    print("textbook = same formula with the step-by-step course softmax and masked_fill(-inf)")


if __name__ == "__main__":
    main()
