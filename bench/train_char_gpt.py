"""Benchmark: a character-level GPT on Tiny Shakespeare, nanoGPT's CPU quick-start config.

    python bench/train_char_gpt.py [PATH]     (default: ../shared/data/tinyshakespeare.txt
                                               relative to the repository root)

Reproduces the run from nanoGPT's README ("I only have a macbook"):

    4 layers, 4 heads, d_model 128, block 64, batch 12, 2000 iterations, dropout 0,
    AdamW lr 1e-3 (betas 0.9/0.99, weight decay 0.1 on matrices), 100 warm-up steps then
    cosine decay to 1e-4 at 2000, gradient clipping 1.0, no biases, exact GELU,
    90/10 train/val split of the characters, loss estimated on 20 batches of each split at the end.

with the course's own model (``course_lib.models.GPT``: its attention, blocks, LayerNorm) and
training loop (``course_lib.training.train``). nanoGPT reports a validation loss of about 1.88
in about 3 minutes; the reference time we compare with is 99 s. Prints the final losses, the
training wall time and the ratio to the reference. Uses torch's default number of threads.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from course_lib.models import GPT, GPTConfig
from course_lib.params import count_parameters
from course_lib.tokens import CharTokenizer
from course_lib.training import cosine_schedule, get_lm_batch, make_optimizer, train

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PATH = REPO / ".." / "shared" / "data" / "tinyshakespeare.txt"
REFERENCE_SECONDS = 99.0
TARGET_VAL_LOSS = 1.89

BLOCK_SIZE, BATCH_SIZE, STEPS = 64, 12, 2000
EVAL_BATCHES = 20


@torch.no_grad()
def estimate_loss(model: GPT, data: torch.Tensor, generator: torch.Generator) -> float:
    """Mean loss over EVAL_BATCHES random batches (model in eval mode)."""
    model.eval()
    losses = [model(*get_lm_batch(data, BLOCK_SIZE, BATCH_SIZE, generator))[1].item() for _ in range(EVAL_BATCHES)]
    model.train()
    return sum(losses) / len(losses)


@torch.no_grad()
def full_split_loss(model: GPT, data: torch.Tensor, batch: int = 256) -> float:
    """Exact mean loss over every non-overlapping BLOCK_SIZE window of a split (no sampling noise).

    nanoGPT's number is a 20-batch estimate (about 15k characters), whose noise is roughly +-0.02;
    this one reads the whole split once.
    """
    model.eval()
    n = (len(data) - 1) // BLOCK_SIZE
    x = data[: n * BLOCK_SIZE].view(n, BLOCK_SIZE)  # (n, T)
    y = data[1 : n * BLOCK_SIZE + 1].view(n, BLOCK_SIZE)  # (n, T) next characters
    total = 0.0
    for i in range(0, n, batch):
        total += model(x[i : i + batch], y[i : i + batch])[1].item() * len(x[i : i + batch])
    model.train()
    return total / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default=str(DEFAULT_PATH))
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--seed", type=int, default=1337, help="seed of the initialisation and the batches")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    args = parser.parse_args()
    if args.threads is not None:  # on a busy shared machine 1 thread can be much faster than 2
        torch.set_num_threads(args.threads)

    text = Path(args.path).read_text(encoding="utf-8")
    tokenizer = CharTokenizer(text)
    data = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    n_train = int(0.9 * len(data))
    train_data, val_data = data[:n_train], data[n_train:]

    torch.manual_seed(args.seed)
    config = GPTConfig(
        vocab_size=tokenizer.vocab_size,
        block_size=BLOCK_SIZE,
        n_layers=4,
        n_heads=4,
        d_model=128,
        dropout=0.0,
        bias=False,
        activation="gelu",
    )
    model = GPT(config)
    optimizer = make_optimizer(model, lr=1e-3, weight_decay=0.1, betas=(0.9, 0.99))
    batch_gen = torch.Generator().manual_seed(args.seed)

    def get_batch():
        x, y = get_lm_batch(train_data, BLOCK_SIZE, BATCH_SIZE, batch_gen)
        return x, y

    start = time.perf_counter()
    history = train(
        model,
        get_batch,
        steps=args.steps,
        optimizer=optimizer,
        loss_fn=lambda m, batch: m(*batch)[1],  # GPT returns (logits, loss) given targets
        lr_schedule=cosine_schedule(1e-3, 1e-4, warmup_steps=min(100, args.steps // 20), total_steps=args.steps),
        grad_clip=1.0,
        log_every=50,
        progress=not args.no_progress,
        desc="char GPT",
    )
    train_seconds = time.perf_counter() - start

    eval_gen = torch.Generator().manual_seed(0)
    train_loss = estimate_loss(model, train_data, eval_gen)
    val_loss = estimate_loss(model, val_data, eval_gen)
    val_full = full_split_loss(model, val_data)

    fused = optimizer.defaults.get("fused", False)
    print(
        f"char GPT: {count_parameters(model) / 1e6:.2f}M parameters, vocab {tokenizer.vocab_size}, "
        f"{len(train_data):,} train / {len(val_data):,} val characters; {args.steps} steps of "
        f"{BATCH_SIZE}x{BLOCK_SIZE}; {torch.get_num_threads()} threads; fused AdamW: {bool(fused)}"
    )
    print(f"{'':<22}{'ours':>10}{'reference':>12}{'ratio':>8}")
    print(f"{'train wall time (s)':<22}{train_seconds:>10.1f}{REFERENCE_SECONDS:>12.1f}{train_seconds / REFERENCE_SECONDS:>8.2f}")
    print(f"{'val loss':<22}{val_loss:>10.4f}{TARGET_VAL_LOSS:>12.2f}{val_loss / TARGET_VAL_LOSS:>8.3f}")
    print(f"{'val loss (whole split)':<22}{val_full:>10.4f}{TARGET_VAL_LOSS:>12.2f}{val_full / TARGET_VAL_LOSS:>8.3f}")
    print(f"{'train loss':<22}{train_loss:>10.4f}")
    verdict = lambda v: "met" if v <= TARGET_VAL_LOSS else "NOT met"  # noqa: E731
    print(f"last logged training loss {history['loss'][-1]:.4f}; val loss target <= {TARGET_VAL_LOSS}: "
          f"{verdict(val_loss)} (20-batch estimate, as nanoGPT), {verdict(val_full)} (whole split)")


if __name__ == "__main__":
    main()
