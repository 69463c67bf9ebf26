"""Benchmark: a character-level GPT on Tiny Shakespeare, nanoGPT's CPU quick-start config.

    python bench/train_char_gpt.py [PATH] [--recipe all|both|nanogpt|course|baseline]
        PATH defaults to ../shared/data/tinyshakespeare.txt relative to the repository root
        all (the default) runs nanogpt, course and baseline; both runs nanogpt and course

The configuration of nanoGPT's README ("I only have a macbook"), for every recipe:

    4 layers, 4 heads, d_model 128, block 64, batch 12, 2000 iterations, dropout 0, no biases,
    exact GELU, tied embeddings, GPT-2 init, 90/10 train/val split of the characters;
    AdamW (betas 0.9/0.99, weight decay 0.1 on matrices), gradient clipping 1.0,
    100 warm-up steps, then cosine decay of the learning rate to a tenth of its peak.

The recipes differ in the peak learning rate and, for the baseline, in the model:

    nanogpt   1e-3 (nanoGPT's own, from its train_shakespeare_char.py)
    course    4e-3 (best of a sweep 1e-3 .. 6e-3 on this configuration, whole-split val loss
              1.900 / 1.788 / 1.777 / 1.764 / 1.774 at 1e-3 / 2e-3 / 3e-3 / 4e-3 / 6e-3: the tiny
              model is under-trained after 2000 steps of 768 characters at 1e-3)
    baseline  1e-3, the nanogpt recipe with ``BaselineGPT`` below instead of the course's model

The nanogpt and course recipes use the course's own model (``course_lib.models.GPT``: its
attention, blocks, LayerNorm); every recipe uses the course's training loop
(``course_lib.training.train``), the same seed, batches, optimizer, schedule and evaluation.

Why a baseline: a time is only comparable with one measured on the same machine under the same
load. nanoGPT's 99 s (REFERENCE_SECONDS) was measured on another, faster machine, where the
course recipe took about as long; on a slower or busier machine the course's time divided by 99 s
says more about the machine than about the course's code. ``BaselineGPT`` is the same network
written the way nanoGPT's model.py is written (one fused q/k/v projection, PyTorch's fused
attention kernel ``F.scaled_dot_product_attention``, ``nn.LayerNorm`` without bias), trained in
the same run, so "/ base" (time / the baseline row's time) is the side-by-side ratio that
measures the course's model code. One difference in size: the course's LayerNorm always has a
bias (``GPTConfig.bias`` switches only the projections' biases), so the course GPT has 9 x 128
more parameters than the baseline (805,248 against 804,096; tests/test_bench.py).

The table prints the training wall time, its ratio to the baseline's and to nanoGPT's 99 s
(other machine), and the validation loss next to the 1.89 target, twice: the mean of 20 random
batches (nanoGPT's estimate; measured over 200 draws on a trained model: standard deviation
0.014, range 1.859 .. 1.940 around a whole-split 1.900) and the exact mean over every
64-character window of the validation split.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib.models import GPT, GPTConfig
from course_lib.params import count_parameters
from course_lib.tokens import CharTokenizer
from course_lib.training import cosine_schedule, get_lm_batch, make_optimizer, train

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PATH = REPO / ".." / "shared" / "data" / "tinyshakespeare.txt"
REFERENCE_SECONDS = 99.0  # nanoGPT, same configuration, measured on another machine (../shared/NOTES.md)
REFERENCE_VAL_LOSS = 1.886  # nanoGPT's 20-batch estimate at step 2000, same source
TARGET_VAL_LOSS = 1.89

BLOCK_SIZE, BATCH_SIZE, STEPS, WARMUP = 64, 12, 2000, 100
EVAL_BATCHES = 20
RECIPES = {"nanogpt": 1e-3, "course": 4e-3, "baseline": 1e-3}  # peak learning rate; the minimum is a tenth of it
BASELINE = "baseline"  # the recipe that trains BaselineGPT instead of the course's GPT
RECIPE_SETS = {"all": list(RECIPES), "both": ["nanogpt", "course"]}


# --------------------------------------------------------------------------
# Baseline: the same network written the way nanoGPT's model.py is written
# --------------------------------------------------------------------------


class BaselineAttention(nn.Module):
    """Causal self-attention: one fused q/k/v projection and PyTorch's fused attention kernel."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_heads, self.dropout = config.n_heads, config.dropout
        self.c_attn = nn.Linear(config.d_model, 3 * config.d_model, bias=config.bias)  # W_Q, W_K, W_V side by side
        self.c_proj = nn.Linear(config.d_model, config.d_model, bias=config.bias)  # W_O
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        B, T, D = x.shape
        q, k, v = self.c_attn(x).split(D, dim=2)  # (B, T, D) each
        q, k, v = (t.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2) for t in (q, k, v))  # (B, H, T, Dh)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)  # (B, H, T, Dh)
        y = y.transpose(1, 2).contiguous().view(B, T, D)  # (B, T, D) heads side by side
        return self.resid_dropout(self.c_proj(y))


class BaselineMLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.d_model, config.d_mlp, bias=config.bias)
        self.gelu = nn.GELU()  # exact GELU
        self.c_proj = nn.Linear(config.d_mlp, config.d_model, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))  # (B, T, D) via (B, T, d_mlp)


class BaselineBlock(nn.Module):
    """Pre-norm block: x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model, eps=config.eps, bias=config.bias)
        self.attn = BaselineAttention(config)
        self.ln_2 = nn.LayerNorm(config.d_model, eps=config.eps, bias=config.bias)
        self.mlp = BaselineMLP(config)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))  # (B, T, D)
        return x + self.mlp(self.ln_2(x))


class BaselineGPT(nn.Module):
    """GPT-2 layout as nanoGPT writes it; ``forward(idx, targets)`` -> (logits (B, T, V), loss).

    Always exact GELU and tied embeddings; the loss is None without targets.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        if config.activation != "gelu" or not config.tie_weights:
            raise ValueError("BaselineGPT implements only activation='gelu' with tie_weights=True")
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.d_model)  # (V, D)
        self.wpe = nn.Embedding(config.block_size, config.d_model)  # (block_size, D)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(BaselineBlock(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model, eps=config.eps, bias=config.bias)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)  # (V, D)
        self.lm_head.weight = self.wte.weight  # tied: one shared Parameter
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # the projections into the residual stream
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: Tensor, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        T = idx.shape[1]
        pos = torch.arange(T, device=idx.device)  # (T,)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, D)
        for block in self.h:
            x = block(x)  # (B, T, D)
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


# --------------------------------------------------------------------------
# Training and evaluation (the same for every recipe)
# --------------------------------------------------------------------------


@dataclass
class Result:
    recipe: str
    lr: float
    model: str  # class name: "GPT" (the course's) or "BaselineGPT"
    seconds: float
    val_loss: float  # 20-batch estimate
    val_full: float  # whole split
    train_loss: float
    n_params: int


@torch.no_grad()
def estimate_loss(model: nn.Module, data: torch.Tensor, generator: torch.Generator) -> float:
    """Mean loss over EVAL_BATCHES random batches (model in eval mode); ``model(x, y)[1]`` is the loss."""
    model.eval()
    losses = [model(*get_lm_batch(data, BLOCK_SIZE, BATCH_SIZE, generator))[1].item() for _ in range(EVAL_BATCHES)]
    model.train()
    return sum(losses) / len(losses)


@torch.no_grad()
def full_split_loss(model: nn.Module, data: torch.Tensor, batch: int = 256) -> float:
    """Exact mean loss over every non-overlapping BLOCK_SIZE window of a split (no sampling noise).

    nanoGPT's number is a 20-batch estimate (about 15k characters); this one reads the whole
    split once.
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


def run(recipe: str, lr: float, vocab_size: int, train_data, val_data, args) -> Result:
    """Train one model from seed ``args.seed`` with peak learning rate ``lr`` and evaluate it.

    The baseline recipe builds ``BaselineGPT``, the others the course's ``GPT``, from the same
    config; everything after that line is the same for every recipe.
    """
    torch.manual_seed(args.seed)
    config = GPTConfig(
        vocab_size=vocab_size,
        block_size=BLOCK_SIZE,
        n_layers=4,
        n_heads=4,
        d_model=128,
        dropout=0.0,
        bias=False,
        activation="gelu",
    )
    model = BaselineGPT(config) if recipe == BASELINE else GPT(config)
    optimizer = make_optimizer(model, lr=lr, weight_decay=0.1, betas=(0.9, 0.99))
    batch_gen = torch.Generator().manual_seed(args.seed)

    start = time.perf_counter()
    train(
        model,
        lambda: get_lm_batch(train_data, BLOCK_SIZE, BATCH_SIZE, batch_gen),
        steps=args.steps,
        optimizer=optimizer,
        loss_fn=lambda m, batch: m(*batch)[1],  # both models return (logits, loss) given targets
        lr_schedule=cosine_schedule(lr, lr / 10, warmup_steps=min(WARMUP, args.steps // 20), total_steps=args.steps),
        grad_clip=1.0,
        log_every=50,
        progress=not args.no_progress,
        desc=f"char GPT, {recipe} recipe",
    )
    seconds = time.perf_counter() - start

    eval_gen = torch.Generator().manual_seed(0)
    train_loss = estimate_loss(model, train_data, eval_gen)
    val_loss = estimate_loss(model, val_data, eval_gen)
    val_full = full_split_loss(model, val_data)
    return Result(recipe, lr, type(model).__name__, seconds, val_loss, val_full, train_loss, count_parameters(model))


def print_table(results: list[Result]) -> None:
    """One row per recipe, with the ratios to the baseline's time (this run), to nanoGPT's time
    (another machine) and to the loss target."""
    verdict = lambda v: "met" if v <= TARGET_VAL_LOSS else "NOT met"  # noqa: E731
    base = next((r.seconds for r in results if r.recipe == BASELINE), None)
    head = (f"{'recipe':<9}{'peak lr':>8}{'time (s)':>10}{'/ base':>8}{'/ 99 s':>8}{'val loss':>10}{'/ 1.89':>8}"
            f"{'whole split':>13}{'/ 1.89':>8}{'train loss':>12}  target <= 1.89")
    print(head)
    print("-" * len(head))
    for r in results:
        to_base = f"{r.seconds / base:>8.2f}" if base else f"{'-':>8}"  # '-': no baseline row in this run
        print(f"{r.recipe:<9}{r.lr:>8.0e}{r.seconds:>10.1f}{to_base}{r.seconds / REFERENCE_SECONDS:>8.2f}"
              f"{r.val_loss:>10.4f}{r.val_loss / TARGET_VAL_LOSS:>8.3f}"
              f"{r.val_full:>13.4f}{r.val_full / TARGET_VAL_LOSS:>8.3f}{r.train_loss:>12.4f}  "
              f"{verdict(r.val_loss)} / {verdict(r.val_full)}")
    print(f"{'nanoGPT':<9}{1e-3:>8.0e}{REFERENCE_SECONDS:>10.1f}{'':>8}{1:>8.2f}{REFERENCE_VAL_LOSS:>10.4f}"
          f"{REFERENCE_VAL_LOSS / TARGET_VAL_LOSS:>8.3f}{'':>13}{'':>8}{'':>12}  (reference, measured on another machine)")
    print("/ base: time / the baseline row's time, both measured in this run (the comparison that counts);")
    print("/ 99 s: time / nanoGPT's 99 s, measured on another machine (indicative only)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default=str(DEFAULT_PATH))
    parser.add_argument("--recipe", choices=[*RECIPE_SETS, *RECIPES], default="all",
                        help="all: nanogpt, course, baseline; both: nanogpt, course")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate of the course recipe (sweeps)")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--seed", type=int, default=1337, help="seed of the initialisation and the batches")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    args = parser.parse_args()
    if args.threads is not None:  # on a busy shared machine 1 thread can be much faster than 2
        torch.set_num_threads(args.threads)
    if args.steps < 20:
        parser.error(f"--steps must be at least 20, got {args.steps}")
    path = Path(args.path)
    if not path.is_file():
        parser.error(f"no text file at {path} (pass the path to tinyshakespeare.txt)")

    text = path.read_text(encoding="utf-8")
    tokenizer = CharTokenizer(text)
    data = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    n_train = int(0.9 * len(data))
    train_data, val_data = data[:n_train], data[n_train:]

    recipes = dict(RECIPES)
    if args.lr is not None:
        recipes["course"] = args.lr
    names = RECIPE_SETS.get(args.recipe, [args.recipe])
    results = [run(name, recipes[name], tokenizer.vocab_size, train_data, val_data, args) for name in names]

    sizes = ", ".join(dict.fromkeys(f"{r.model} {r.n_params:,}" for r in results))
    print(
        f"char GPT: {results[0].n_params / 1e6:.2f}M parameters ({sizes}), vocab {tokenizer.vocab_size}, "
        f"{len(train_data):,} train / {len(val_data):,} val characters; {args.steps} steps of "
        f"{BATCH_SIZE}x{BLOCK_SIZE}; seed {args.seed}; {torch.get_num_threads()} threads"
    )
    print_table(results)


if __name__ == "__main__":
    main()
