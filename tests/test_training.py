"""The training loop: loss goes down, history is recorded, progress bar can be switched off."""

from __future__ import annotations

import pytest
import torch

import course_lib.training as training
from course_lib.models import GPT, GPTConfig
from course_lib.training import cosine_schedule, get_lm_batch, lm_loss, make_optimizer, train


def _tiny_gpt(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=12, block_size=8, n_layers=1, n_heads=2, d_model=16))


def _periodic_data():
    """A sequence with a period of 5 tokens: perfectly predictable from the previous token."""
    return torch.tensor([3, 1, 4, 7, 9] * 60)


def test_loss_goes_down_and_history_is_recorded():
    model = _tiny_gpt()
    data = _periodic_data()
    g = torch.Generator().manual_seed(0)
    history = train(model, lambda: get_lm_batch(data, 8, 16, generator=g), steps=60, lr=3e-3, progress=False)
    assert history["step"] == list(range(1, 61))
    assert len(history["loss"]) == 60
    first, last = sum(history["loss"][:5]) / 5, sum(history["loss"][-5:]) / 5
    assert first > 2.0  # about log(12) = 2.48 at the start
    assert last < 0.5 * first
    assert model.training


def test_eval_fn_log_every_and_dict_results():
    model = _tiny_gpt()
    data = _periodic_data()
    x, y = get_lm_batch(data, 8, 4, generator=torch.Generator().manual_seed(1))
    calls = []

    def eval_fn(m):
        calls.append(m.training)
        return {"val_loss": lm_loss(m, (x, y)).item(), "const": 1.0}

    history = train(
        model, lambda: (x, y), steps=10, lr=1e-3, eval_fn=eval_fn, eval_every=4, log_every=3, progress=False
    )
    assert history["step"] == [3, 6, 9, 10]
    assert history["eval_step"] == [4, 8, 10]
    assert len(history["val_loss"]) == 3 and history["const"] == [1.0, 1.0, 1.0]
    assert calls == [False, False, False], "eval_fn runs in eval mode"
    assert model.training


def test_accepts_an_iterable_of_batches_and_cycles_it():
    model = _tiny_gpt()
    data = _periodic_data()
    g = torch.Generator().manual_seed(2)
    loader = [get_lm_batch(data, 8, 4, generator=g) for _ in range(3)]
    history = train(model, loader, steps=7, progress=False, eval_fn=lambda m: 0.5)
    assert history["step"] == list(range(1, 8))
    assert history["eval"][-1] == 0.5


def test_progress_bar_uses_tqdm_auto_and_can_be_disabled(monkeypatch):
    made = []
    real_tqdm = training.tqdm

    def spy(*args, **kwargs):
        bar = real_tqdm(*args, **kwargs)
        made.append(kwargs.get("disable"))
        return bar

    monkeypatch.setattr(training, "tqdm", spy)
    model = _tiny_gpt()
    batch = get_lm_batch(_periodic_data(), 8, 2, generator=torch.Generator().manual_seed(0))
    train(model, lambda: batch, steps=2, progress=False)
    train(model, lambda: batch, steps=2, progress=True)
    assert made == [True, False]
    import tqdm.auto

    assert real_tqdm is tqdm.auto.tqdm


def test_make_optimizer_decays_matrices_only():
    model = _tiny_gpt()
    opt = make_optimizer(model, lr=1e-3, weight_decay=0.1)
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decayed["params"]) and all(p.dim() < 2 for p in plain["params"])
    n_params = len(list(model.parameters()))
    assert len(decayed["params"]) + len(plain["params"]) == n_params


def test_get_lm_batch_targets_are_shifted_inputs():
    data = torch.arange(100)
    x, y = get_lm_batch(data, 10, 5, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (5, 10)
    assert torch.equal(y, x + 1)  # data[i] = i, so the next token is i + 1
    assert torch.equal(x[:, 1:], x[:, :-1] + 1)
    with pytest.raises(ValueError, match="needs more than block_size"):
        get_lm_batch(torch.arange(10), 10, 2)


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(steps=0), "steps must be a positive int"), (dict(steps=5, lr=0.0), "lr must be > 0"),
     (dict(steps=5, eval_every=0, eval_fn=lambda m: 0.0), "eval_every")],
)  # fmt: skip
def test_train_bad_arguments(kwargs, match):
    model = _tiny_gpt()
    batch = get_lm_batch(_periodic_data(), 8, 2)
    with pytest.raises(ValueError, match=match):
        train(model, lambda: batch, progress=False, **kwargs)


def test_lm_loss_shape_mismatch():
    model = _tiny_gpt()
    with pytest.raises(ValueError, match="expected targets of shape"):
        lm_loss(model, (torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 5, dtype=torch.long)))


def test_cosine_schedule_shape():
    lr = cosine_schedule(1e-3, 1e-4, warmup_steps=10, total_steps=110)
    assert lr(5) == pytest.approx(5e-4) and lr(10) == pytest.approx(1e-3)
    assert lr(60) == pytest.approx(0.5 * (1e-3 + 1e-4))  # half way through the cosine
    assert lr(110) == pytest.approx(1e-4) and lr(500) == pytest.approx(1e-4)
    values = [lr(s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:])), "decays monotonically after warm-up"
    with pytest.raises(ValueError, match="min_lr"):
        cosine_schedule(1e-4, 1e-3, 1, 10)


def test_lr_schedule_is_applied_each_step():
    model = _tiny_gpt()
    batch = get_lm_batch(_periodic_data(), 8, 2, generator=torch.Generator().manual_seed(0))
    history = train(model, lambda: batch, steps=4, lr_schedule=lambda s: 1e-3 * s, progress=False)
    assert history["lr"] == pytest.approx([1e-3, 2e-3, 3e-3, 4e-3])
