"""Benchmark: text generation with and without the KV cache.

    python bench/generation.py [--new-tokens 256] [--repeats 3]

A 4-layer, 128-dim, 4-head GPT (character-sized vocabulary of 65, block_size 512 so the
cache is never cropped) generates 256 tokens from a 16-token prompt, batch 1, greedy, with
``course_lib.generation.generate(use_cache=True/False)``. Prints the best-of-N wall time of each
and the speed-up; the two outputs are checked to be identical. Target: speed-up >= 4x.

On a busy shared machine the cached run suffers most: its operations are tiny, so the time
of each is dominated by waking torch's worker threads; ``--threads 1`` shows the ratio without
that effect.

Why it is faster: without the cache step t runs the whole model on t tokens (all the
projections and MLPs again, plus attention over t x t); with it, step t runs the model on one
token and attends over the t cached keys.
"""

from __future__ import annotations

import argparse
import time

import torch

from course_lib.generation import generate
from course_lib.models import GPT, GPTConfig


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    config = GPTConfig(vocab_size=65, block_size=512, n_layers=4, n_heads=4, d_model=128)
    model = GPT(config).eval()
    prompt = torch.randint(0, config.vocab_size, (1, args.prompt_tokens))
    if args.prompt_tokens + args.new_tokens > config.block_size:
        raise SystemExit("prompt + new tokens must fit in block_size for this benchmark")

    def run(use_cache: bool) -> torch.Tensor:
        return generate(model, prompt, args.new_tokens, temperature=0, use_cache=use_cache)

    same = torch.equal(run(True), run(False))  # also a warm-up
    t_cache = best_time(lambda: run(True), args.repeats)
    t_plain = best_time(lambda: run(False), args.repeats)

    n = args.new_tokens
    print(
        f"GPT {config.n_layers} layers, d_model {config.d_model}, {config.n_heads} heads, "
        f"block_size {config.block_size}; batch 1, prompt {args.prompt_tokens}, {n} new tokens, "
        f"greedy; {torch.get_num_threads()} threads; best of {args.repeats}"
    )
    print(f"{'':<16}{'time (s)':>10}{'tokens/s':>10}{'ratio':>8}")
    print(f"{'no KV cache':<16}{t_plain:>10.3f}{n / t_plain:>10.0f}{1.0:>8.2f}")
    print(f"{'KV cache':<16}{t_cache:>10.3f}{n / t_cache:>10.0f}{t_plain / t_cache:>8.2f}")
    print(f"speed-up {t_plain / t_cache:.1f}x (target >= 4x); identical outputs: {same}")


if __name__ == "__main__":
    main()
