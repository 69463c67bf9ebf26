"""A small, readable training loop with a progress bar.

    for step in 1..steps:
        x, y   = next batch
        loss   = loss_fn(model, (x, y))          # default: cross-entropy of model(x) against y
        loss.backward(); clip gradients (optional); optimizer.step(); optimizer.zero_grad()
        every eval_every steps: history["eval"] += eval_fn(model)

The loop is deliberately plain so a learner can read all of it; the only conveniences are a
tqdm progress bar (``tqdm.auto`` picks the notebook widget or the terminal bar) and a history
dict that plotting code can use directly.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

__all__ = ["train", "lm_loss", "make_optimizer", "get_lm_batch", "cosine_schedule"]


def lm_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Default loss: mean cross-entropy of ``model(x)`` against ``y``.

    Works for language models (logits (B, T, V), targets (B, T)) and classifiers
    (logits (B, C), targets (B,)): the logits are flattened to (N, V) and the targets to (N,).
    Targets equal to -100 are ignored (the PyTorch convention, e.g. for padding).
    """
    x, y = batch
    logits = model(x)
    if isinstance(logits, tuple):  # models that return (logits, loss) or (logits, extras)
        logits = logits[0]
    if logits.shape[:-1] != y.shape:
        raise ValueError(
            f"model output has shape {tuple(logits.shape)}; expected targets of shape "
            f"{tuple(logits.shape[:-1])} but got {tuple(y.shape)}"
        )
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))  # scalar


def make_optimizer(
    model: nn.Module, lr: float, weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.99)
) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only (as nanoGPT does).

    Parameters with ``dim() >= 2`` (weight matrices, embeddings) are decayed; biases and
    LayerNorm gains (``dim() < 2``) are not. Uses the fused CPU/GPU kernel when this torch has one
    (same maths, fewer Python-level loops).
    """
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    kwargs: dict[str, Any] = {}
    if "fused" in inspect.signature(torch.optim.AdamW).parameters:
        kwargs["fused"] = True
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=betas, **kwargs)
    except (RuntimeError, ValueError):  # fused not supported for this device/dtype
        return torch.optim.AdamW(groups, lr=lr, betas=betas)


def get_lm_batch(
    data: torch.Tensor, block_size: int, batch_size: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of a 1-D token tensor: x = data[i:i+T], y = data[i+1:i+T+1] (next tokens).

    Returns x, y of shape (batch_size, block_size), dtype long.
    """
    if data.dim() != 1:
        raise ValueError(f"data must be a 1-D tensor of token ids, got shape {tuple(data.shape)}")
    if len(data) <= block_size:
        raise ValueError(f"data has {len(data)} tokens, needs more than block_size={block_size}")
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)  # (B,)
    offsets = torch.arange(block_size)  # (T,)
    idx = starts[:, None] + offsets[None, :]  # (B, T)
    return data[idx].long(), data[idx + 1].long()


def cosine_schedule(max_lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """Learning rate for step s = 1, 2, ...: linear warm-up, then cosine decay (as nanoGPT).

        lr(s) = max_lr * s / warmup_steps                                    s <= warmup_steps
        lr(s) = min_lr + (max_lr - min_lr) * (1 + cos(pi * r)) / 2,
                r = (s - warmup_steps) / (total_steps - warmup_steps)         up to total_steps
        lr(s) = min_lr                                                       afterwards
    """
    if not 0 <= min_lr <= max_lr:
        raise ValueError(f"need 0 <= min_lr <= max_lr, got min_lr={min_lr}, max_lr={max_lr}")
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"need 0 <= warmup_steps < total_steps, got {warmup_steps} and {total_steps}")

    def lr_at(step: int) -> float:
        if step <= warmup_steps:
            return max_lr * step / warmup_steps
        if step >= total_steps:
            return min_lr
        r = (step - warmup_steps) / (total_steps - warmup_steps)  # 0 -> 1
        return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * r))

    return lr_at


def _batch_source(batches: Callable[[], Any] | Iterable) -> Callable[[], Any]:
    """Turn a ``get_batch()`` callable or an iterable (DataLoader, list) into a callable.

    An iterable is cycled, so ``steps`` may exceed its length (a re-iterable such as a DataLoader
    starts a new epoch, reshuffling if it shuffles).
    """
    if callable(batches) and not hasattr(batches, "__iter__"):
        return batches
    if hasattr(batches, "__iter__"):
        def epochs():
            while True:
                empty = True
                for batch in batches:
                    empty = False
                    yield batch
                if empty:
                    raise ValueError("the batch iterable is empty")
                if iter(batches) is batches:  # a one-shot iterator cannot be restarted
                    return

        stream = epochs()
        return lambda: next(stream)
    raise ValueError(f"batches must be a callable get_batch() or an iterable of batches, got {type(batches).__name__}")


def train(
    model: nn.Module,
    batches: Callable[[], Any] | Iterable,
    steps: int,
    lr: float = 1e-3,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    weight_decay: float = 0.0,
    loss_fn: Callable[[nn.Module, Any], torch.Tensor] = lm_loss,
    eval_fn: Callable[[nn.Module], float | dict[str, float]] | None = None,
    eval_every: int | None = None,
    grad_clip: float | None = None,
    lr_schedule: Callable[[int], float] | None = None,
    log_every: int = 1,
    progress: bool = True,
    desc: str = "training",
) -> dict[str, list]:
    """Train ``model`` for ``steps`` optimizer steps and return the history.

    Args:
        batches: ``get_batch()`` returning a batch, or an iterable of batches (cycled). A batch is
            whatever ``loss_fn`` accepts; for the default :func:`lm_loss` it is ``(x, y)``.
        steps: number of optimizer steps (> 0).
        lr: learning rate of the default optimizer (AdamW via :func:`make_optimizer`).
        optimizer: use this optimizer instead of the default (``lr``/``weight_decay`` then unused).
        loss_fn: ``loss_fn(model, batch) -> scalar tensor``.
        eval_fn: ``eval_fn(model) -> float or dict of floats``, called in eval mode under
            ``torch.no_grad()`` every ``eval_every`` steps and after the last step.
        eval_every: defaults to ``max(1, steps // 10)`` when ``eval_fn`` is given.
        grad_clip: clip the global gradient norm to this value (None: no clipping).
        lr_schedule: ``lr_schedule(step) -> lr`` for steps 1..steps (e.g. :func:`cosine_schedule`);
            None keeps the optimizer's learning rate.
        log_every: record the training loss every this many steps (and at the last step).
        progress: show a tqdm progress bar (``tqdm.auto``); False disables it.

    Returns:
        history: ``{"step": [...], "loss": [...], "lr": [...], "eval_step": [...], "eval": [...]}``; when
        ``eval_fn`` returns a dict, each of its keys gets its own list instead of ``"eval"``.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if log_every <= 0:
        raise ValueError(f"log_every must be a positive int, got {log_every}")
    if eval_every is None:
        eval_every = max(1, steps // 10)
    if eval_every <= 0:
        raise ValueError(f"eval_every must be a positive int, got {eval_every}")
    next_batch = _batch_source(batches)
    if optimizer is None:
        optimizer = make_optimizer(model, lr, weight_decay)

    history: dict[str, list] = {"step": [], "loss": [], "lr": [], "eval_step": []}
    bar = tqdm(range(1, steps + 1), desc=desc, disable=not progress, leave=True)
    model.train()
    for step in bar:
        if lr_schedule is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr_schedule(step)
        loss = loss_fn(model, next_batch())
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        if step % log_every == 0 or step == steps:
            history["step"].append(step)
            history["loss"].append(loss.item())
            history["lr"].append(optimizer.param_groups[0]["lr"])
            bar.set_postfix(loss=f"{history['loss'][-1]:.4f}", refresh=False)
        if eval_fn is not None and (step % eval_every == 0 or step == steps):
            _record_eval(model, eval_fn, step, history)
    bar.close()
    return history


def _record_eval(model: nn.Module, eval_fn: Callable, step: int, history: dict[str, list]) -> None:
    """Run eval_fn in eval mode without gradients and append its result(s) to history."""
    model.eval()
    with torch.no_grad():
        result = eval_fn(model)
    model.train()
    history["eval_step"].append(step)
    values = result if isinstance(result, dict) else {"eval": result}
    for key, value in values.items():
        history.setdefault(key, []).append(float(value))
