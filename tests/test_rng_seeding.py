"""PyTorch's global random state during graded calls (course_lib.exercises.rng, issue 11, 3.).

Every call of a learner's function, of the reference and of each known mistake runs with the global CPU
generator seeded from the call (its first GeneratorSeed and its position in the plan), inline
(``Exercise.invoke``) and in the grader's worker (``Worker._invoke``), and the caller's state is put back
afterwards. So a learner who forgets ``generator=generator`` draws known numbers, the same inline and in the
grader, and can be told so by name. Proven here:

* the seed is deterministic, depends on the call, and is never the generator's own seed;
* the inline path and the grader's by-value path (``tests/by_value.py``) hand a learner's function the same
  global stream, call for call (the property's extra calls included);
* the caller's global state is unchanged after a check, whatever the learner's function does to it;
* for each sampling exercise, learner-written answers that forget the generator (or forget it in one of
  their draws, or seed a stream with 0 themselves) get the right name inline and in the grader on hidden
  cases, and right answers written differently (a stray global draw, a copy of the generator) still pass;
* answers that draw with numpy or Python's random module get no name (none fits) and the property's
  message says where such draws may come from.
"""

from __future__ import annotations

import io
import random
import types

import numpy as np
import pytest
import torch

from .by_value import _LIMITS, _worker_for, grade_by_value, learner_class, plan_for
from course_lib import generation as G
from course_lib.exercises import check, get, load_all, run_local
from course_lib.exercises.core import PASSED, GeneratorSeed, ModuleInputs
from course_lib.exercises.rng import NO_GENERATOR, first_generator_seed, global_seed, seeded_global_rng
from course_lib.grading import session, wire

load_all()
SAMPLING = ("02.sample_next_token", "08.mask_tokens", "09.sample_next_token", "09.TextGenerator")
HIDDEN_SEED = 4242


def _both(ex_id: str, obj):
    """(inline report on the public cases, grader report on hidden cases) of a learner's answer."""
    ex = get(ex_id)
    if ex.kind == "module":
        obj = learner_class(ex, obj)
    return run_local(ex, obj), grade_by_value(ex, obj, hidden=True, seed=HIDDEN_SEED, allow_reference=False)


# ---------------------------------------------------------------------------------------------------
# The seed
# ---------------------------------------------------------------------------------------------------


def test_global_seed_depends_on_the_call_only_and_is_never_the_generators_own():
    args = (torch.zeros(2), 0.5, GeneratorSeed(7))
    s = global_seed(args, {}, 0)
    assert s == global_seed(args, {}, 0) == global_seed((torch.ones(3), 2.0, GeneratorSeed(7)), {}, 0)
    assert 0 <= s < 2**63 and s != 7
    assert s != global_seed(args, {}, 1)  # a property's extra call (same arguments) draws other numbers
    assert s != global_seed((torch.zeros(2), 0.5, GeneratorSeed(8)), {}, 0)
    assert global_seed((torch.zeros(2),), {}, 0) == global_seed((), {"x": 1}, 0) != global_seed((), {}, 1)
    # where the generator sits: a keyword, inside a module's forward arguments, the first of several
    assert first_generator_seed(((1,), {"generator": GeneratorSeed(3)})) == 3
    assert first_generator_seed((ModuleInputs({}, {}, (torch.ones(1), GeneratorSeed(5))),)) == 5
    assert first_generator_seed([GeneratorSeed(9), {"g": GeneratorSeed(4)}]) == 9
    assert first_generator_seed((None, [1, 2])) is None and NO_GENERATOR


def test_seeded_global_rng_seeds_and_restores():
    torch.manual_seed(99)
    before = torch.get_rng_state()
    with seeded_global_rng(123):
        a = torch.rand(4)
    with seeded_global_rng(123):
        b = torch.rand(4)
    assert torch.equal(a, b) and torch.equal(before, torch.get_rng_state())
    assert not torch.equal(a, torch.rand(4, generator=torch.Generator().manual_seed(123 + 1)))
    with pytest.raises(ValueError), seeded_global_rng(5):
        torch.rand(1)
        raise ValueError("the learner's code raised")
    assert torch.equal(before, torch.get_rng_state())


# ---------------------------------------------------------------------------------------------------
# The same stream inline and in the grader
# ---------------------------------------------------------------------------------------------------


def _grader_outcomes(ex, obj, hidden: bool):
    """The decoded outcomes of every call of the grader's plan, through the worker's ``evaluate``."""
    plan = plan_for(ex, hidden, HIDDEN_SEED)
    w = _worker_for(ex, False)
    w.snapshots[ex.id] = obj
    w.out = io.BytesIO()
    w.evaluate({"exercise": ex.id, "calls": plan.payload, "max_value_bytes": _LIMITS.max_value_mb << 20}, plan.blobs)
    stream = io.BytesIO(w.out.getvalue())
    grader = types.SimpleNamespace(limits=_LIMITS)
    outcomes = []
    while True:
        header, blobs = wire.read_message(stream, 1 << 31)
        if header["op"] == "eval_done":
            return plan, outcomes
        outcomes.append(session.NotebookGrader._outcome(grader, header, blobs))


def _global_draws(*args, **kwargs):
    """A 'learner' that returns what it draws from the global state (and consumes it unevenly)."""
    torch.rand(3)
    return torch.rand(5)


def _global_draws_forward(self, *args):
    """A module's forward that returns global draws; the notebook's __init__ (a GPT) consumed some before."""
    return torch.cat([torch.randn(2), torch.rand(5)])


@pytest.mark.parametrize("hidden", [False, True], ids=["public", "hidden"])
@pytest.mark.parametrize("ex_id", SAMPLING + ("02.stable_softmax",))
def test_inline_and_grader_hand_the_learner_the_same_global_stream(ex_id, hidden):
    ex = get(ex_id)
    obj = learner_class(ex, _global_draws_forward) if ex.kind == "module" else _global_draws
    plan, graded = _grader_outcomes(ex, obj, hidden)
    inline = ex.evaluate_locally(obj, plan.calls)
    assert len(inline) == len(graded) == len(plan.calls) > 1
    values = []
    for i, (a, b) in enumerate(zip(inline, graded)):
        assert a.kind == b.kind == "value", (i, a.error, b.error)
        assert torch.equal(a.value, b.value), f"{ex_id}: call {i} drew other global numbers in the grader"
        values.append(a.value)
    # every call has its own stream (cases and the property's extra calls alike)
    assert len({tuple(v.tolist()) for v in values}) == len(values)
    # and it is not the generator's stream
    for call, v in zip(plan.calls, values):
        seed = first_generator_seed((call.args, call.kwargs))
        if seed is not None and ex.kind != "module":
            g = torch.Generator().manual_seed(seed)
            torch.rand(3, generator=g)
            assert not torch.equal(v, torch.rand(5, generator=g))


# ---------------------------------------------------------------------------------------------------
# The caller's global state
# ---------------------------------------------------------------------------------------------------


def _seeds_itself(logits, temperature, generator):
    torch.manual_seed(0)
    torch.rand(100)
    return torch.zeros(logits.shape[0], dtype=torch.long)


def test_a_check_leaves_the_callers_global_state_unchanged():
    torch.manual_seed(2024)
    before = torch.get_rng_state()
    ex = get("09.TextGenerator")
    learners = [("02.sample_next_token", _seeds_itself), ("02.sample_next_token", _forgot_02),
                ("08.mask_tokens", _forgot_08), ("09.sample_next_token", _forgot_09),
                ("09.TextGenerator", learner_class(ex, _forgot_loop)),
                ("09.TextGenerator", learner_class(ex, _ref_loop))]  # builds GPTs (nn init draws)
    for ex_id, obj in learners:
        result = check(ex_id, obj)
        assert result.report.status in ("failed", "passed", "partial"), result.report.message
        assert torch.equal(before, torch.get_rng_state()), f"check({ex_id!r}, ...) changed the global state"
    for ex_id, obj in learners[:3]:
        grade_by_value(get(ex_id), obj, hidden=True, seed=HIDDEN_SEED, allow_reference=False)
        assert torch.equal(before, torch.get_rng_state()), "the worker's evaluate changed the global state"


# ---------------------------------------------------------------------------------------------------
# Learners who forget the generator, as they would write it
# ---------------------------------------------------------------------------------------------------


def _probs(logits, temperature):
    z = logits / temperature
    e = torch.exp(z - z.max(dim=-1, keepdim=True).values)
    return e / e.sum(dim=-1, keepdim=True)


def _pick(p, u):
    return (p.cumsum(-1) <= u[:, None]).sum(-1).clamp(max=p.shape[-1] - 1)


def _forgot_02(logits, temperature, generator):
    p = _probs(logits, temperature)
    return _pick(p, torch.rand(p.shape[0]))


def _forgot_02_rand_like(logits, temperature, generator):
    p = _probs(logits, temperature)
    return _pick(p, torch.rand_like(p[:, 0]))


def _mask(ids, V, mask_id, special_ids, mask_prob, gens):
    g_u, g_r, g_i = gens
    special = torch.isin(ids, torch.tensor(list(special_ids)))
    u = torch.rand(ids.shape, generator=g_u)
    r = torch.rand(ids.shape, generator=g_r)
    random_ids = torch.randint(V, ids.shape, generator=g_i)
    selected = (u < mask_prob) & ~special
    out = ids.clone()
    out[selected & (r < 0.8)] = mask_id
    swap = selected & (r >= 0.8) & (r < 0.9)
    out[swap] = random_ids[swap]
    return out, torch.where(selected, ids, torch.full_like(ids, -100))


def _mask_learner(forgotten):
    def mask_tokens(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob=0.15):
        gens = tuple(None if d in forgotten else generator for d in ("u", "r", "randint"))
        return _mask(input_ids, vocab_size, mask_id, special_ids, mask_prob, gens)

    return mask_tokens


_forgot_08 = _mask_learner(("u", "r", "randint"))


def _forgot_08_rand_like(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob=0.15):
    x = input_ids.float()
    special = torch.isin(input_ids, torch.tensor(list(special_ids)))
    u, r, random_ids = torch.rand_like(x), torch.rand_like(x), torch.randint_like(input_ids, vocab_size)
    selected = (u < mask_prob) & ~special
    out = torch.where(selected & (r < 0.8), torch.full_like(input_ids, mask_id), input_ids)
    out = torch.where(selected & (r >= 0.8) & (r < 0.9), random_ids, out)
    return out, torch.where(selected, input_ids, torch.full_like(input_ids, -100))


def _filtered(logits, temperature, top_k, top_p):
    x = logits / temperature
    if top_k is not None:
        kth = torch.topk(x, min(top_k, x.shape[-1]), dim=-1).values[..., -1:]
        x = x.masked_fill(x < kth, float("-inf"))
    if top_p is not None:
        sx, order = torch.sort(x, dim=-1, descending=True)
        p = torch.softmax(sx, dim=-1)
        drop = (p.cumsum(-1) - p) >= top_p
        drop[..., 0] = False
        x = x.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), float("-inf"))
    return torch.softmax(x, dim=-1)


def _sampler_09(draw):
    def sample_next_token(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
        if temperature == 0:
            return logits.argmax(dim=-1)
        return draw(_filtered(logits, temperature, top_k, top_p), generator)

    return sample_next_token


def _multinomial(p, g):
    return torch.multinomial(p.reshape(-1, p.shape[-1]), 1, generator=g).reshape(p.shape[:-1])


_forgot_09 = _sampler_09(lambda p, g: _multinomial(p, None))
_forgot_09_categorical = _sampler_09(lambda p, g: torch.distributions.Categorical(probs=p).sample())


def _loop(pass_on):
    def forward(self, input_ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
        ids = input_ids
        block = self.model.config.block_size
        with torch.no_grad():
            for step in range(max_new_tokens):
                logits = self.model(ids[:, -block:])[:, -1, :]
                nxt = G.sample_next_token(logits, temperature, top_k=top_k, top_p=top_p,
                                          generator=pass_on(step, generator))
                ids = torch.cat([ids, nxt[:, None]], dim=1)
        return ids

    return forward


_forgot_loop = _loop(lambda step, g: None)
_ref_loop = _loop(lambda step, g: g)


def _forgot_loop_own_sampler(self, input_ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
    ids = input_ids
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = self.model(ids[:, -self.model.config.block_size:])[:, -1, :]
            if temperature == 0:
                nxt = logits.argmax(-1)
            else:
                nxt = torch.multinomial(_filtered(logits, temperature, top_k, top_p), 1)[:, 0]  # no generator
            ids = torch.cat([ids, nxt[:, None]], dim=1)
    return ids


FORGETTERS = [("02.sample_next_token", _forgot_02), ("02.sample_next_token", _forgot_02_rand_like),
              ("08.mask_tokens", _forgot_08), ("08.mask_tokens", _forgot_08_rand_like),
              ("09.sample_next_token", _forgot_09), ("09.sample_next_token", _forgot_09_categorical),
              ("09.TextGenerator", _forgot_loop), ("09.TextGenerator", _forgot_loop_own_sampler)]


@pytest.mark.parametrize("ex_id,fn", FORGETTERS, ids=[f"{e}:{f.__name__}" for e, f in FORGETTERS])
def test_forgetting_the_generator_is_named_inline_and_in_the_grader(ex_id, fn):
    inline, graded = _both(ex_id, fn)
    for path, report in (("inline", inline), ("grader", graded)):
        assert report.status == "failed" and report.points == 0, (path, report.status, report.message)
        assert report.mistake == "ignores the generator", (path, report.mistake, report.message)
        assert "generator=generator" in report.mistake_message
        if get(ex_id).properties and any(p.name == "same seed, same tokens" for p in get(ex_id).properties):
            assert "same seed, same tokens" in report.failed_properties, path


# 08.mask_tokens makes three draws: forgetting the generator in some of them is named for those draws.
PARTIAL = [(("randint",), "the generator missing from the randint draw"),
           (("r",), "the generator missing from the r draw"),
           (("u",), "the generator missing from the u draw"),
           (("u", "r"), "the generator missing from the u and r draws"),
           (("r", "randint"), "the generator missing from the r and randint draws")]


@pytest.mark.parametrize("forgotten,name", PARTIAL, ids=[" and ".join(f) for f, _ in PARTIAL])
def test_forgetting_the_generator_in_some_draws_names_those_draws(forgotten, name):
    inline, graded = _both("08.mask_tokens", _mask_learner(forgotten))
    for path, report in (("inline", inline), ("grader", graded)):
        assert report.status == "failed" and report.mistake == name, (path, report.mistake, report.message)
        text = report.mistake_message
        for draw, code in (("u", "`u = torch.rand(...)`"), ("r", "`r = torch.rand(...)`"),
                           ("randint", "`torch.randint(...)`")):
            assert (code in text.split(" no `generator=generator`")[0]) == (draw in forgotten), (draw, text)


def test_forgetting_u_and_randint_is_never_told_that_randint_has_the_generator():
    """On the small public cases forgetting u alone and u and randint give the same output (random tokens
    are rare): the name it gets inline must be true for it, and the grader names nothing else."""
    inline, graded = _both("08.mask_tokens", _mask_learner(("u", "randint")))
    assert inline.status == graded.status == "failed"
    assert inline.mistake == "the generator missing from the u draw"
    assert "randint" not in inline.mistake_message.split(". Pass")[0]  # claims nothing about the other draws
    assert graded.mistake in (None, "the generator missing from the u draw")


# Seeding a stream with 0 inside the function: three ways, one stream.
def _new_generator_02(logits, temperature, generator):
    p = _probs(logits, temperature)
    return _pick(p, torch.rand(p.shape[0], generator=torch.Generator().manual_seed(0)))


def _reseeds_given_02(logits, temperature, generator):
    generator.manual_seed(0)
    p = _probs(logits, temperature)
    return _pick(p, torch.rand(p.shape[0], generator=generator))


def _manual_seed_02(logits, temperature, generator):
    torch.manual_seed(0)
    return _forgot_02(logits, temperature, generator)


def _manual_seed_08(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob=0.15):
    torch.manual_seed(0)
    return _forgot_08(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob)


def _new_generator_08(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob=0.15):
    g = torch.Generator().manual_seed(0)
    return _mask(input_ids, vocab_size, mask_id, special_ids, mask_prob, (g, g, g))


def _one_fixed_generator(self, input_ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
    g = torch.Generator().manual_seed(0)  # made once per call
    return _loop(lambda step, _: g)(self, input_ids, max_new_tokens, temperature, top_k, top_p, generator)


def _manual_seed_09(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    torch.manual_seed(0)
    return _forgot_09(logits, temperature, top_k, top_p, generator)


def _manual_seed_loop(self, input_ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
    torch.manual_seed(0)
    return _forgot_loop(self, input_ids, max_new_tokens, temperature, top_k, top_p, generator)


SEEDED = [("02.sample_next_token", _new_generator_02, "seeded with 0 inside the function"),
          ("02.sample_next_token", _reseeds_given_02, "seeded with 0 inside the function"),
          ("02.sample_next_token", _manual_seed_02, "seeded with 0 inside the function"),
          ("08.mask_tokens", _new_generator_08, "seeded with 0 inside the function"),
          ("08.mask_tokens", _manual_seed_08, "seeded with 0 inside the function"),
          ("09.sample_next_token", _sampler_09(lambda p, g: _multinomial(p, torch.Generator().manual_seed(0))),
           "seeded with 0 inside the function"),
          ("09.sample_next_token", _manual_seed_09, "seeded with 0 inside the function"),
          ("09.TextGenerator", _one_fixed_generator, "seeded with 0 inside forward"),
          ("09.TextGenerator", _manual_seed_loop, "seeded with 0 inside forward")]


@pytest.mark.parametrize("ex_id,fn,name", SEEDED, ids=[f"{e}:{i}" for i, (e, _, _) in enumerate(SEEDED)])
def test_a_stream_seeded_with_0_inside_the_function_is_named(ex_id, fn, name):
    inline, graded = _both(ex_id, fn)
    for path, report in (("inline", inline), ("grader", graded)):
        assert report.status == "failed" and report.mistake == name, (path, report.mistake, report.message)


# ---------------------------------------------------------------------------------------------------
# Right answers written differently, and draws from elsewhere
# ---------------------------------------------------------------------------------------------------


def _right_02_stray_global(logits, temperature, generator):
    torch.rand(3)  # a debugging draw from the global state: harmless, u still comes from the generator
    p = torch.softmax(logits / temperature, dim=-1)
    u = torch.empty(p.shape[0]).uniform_(0, 1, generator=generator)
    return (p.cumsum(-1) > u.unsqueeze(1)).long().argmax(dim=-1)


def _right_02_copy(logits, temperature, generator):
    g = torch.Generator().manual_seed(generator.initial_seed())  # a fresh copy of the fresh generator
    p = _probs(logits, temperature)
    return _pick(p, torch.rand(p.shape[0], generator=g))


def _right_08(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob=0.15):
    torch.randint(5, (2,))  # a stray global draw: harmless
    return _mask(input_ids, vocab_size, mask_id, special_ids, mask_prob, (generator, generator, generator))


RIGHT = [("02.sample_next_token", _right_02_stray_global), ("02.sample_next_token", _right_02_copy),
         ("08.mask_tokens", _right_08),
         ("09.sample_next_token", _sampler_09(lambda p, g: p.multinomial(1, generator=g).squeeze(-1))),
         ("09.TextGenerator", _ref_loop)]


@pytest.mark.parametrize("ex_id,fn", RIGHT, ids=[f"{e}:{i}" for i, (e, _) in enumerate(RIGHT)])
def test_right_answers_written_differently_pass(ex_id, fn):
    inline, graded = _both(ex_id, fn)
    assert inline.status == graded.status == PASSED, (inline.message, graded.message)


def _numpy_02(logits, temperature, generator):
    p = _probs(logits, temperature)
    return _pick(p, torch.from_numpy(np.random.rand(p.shape[0])).float())


def _python_random_02(logits, temperature, generator):
    p = _probs(logits, temperature)
    return _pick(p, torch.tensor([random.random() for _ in range(p.shape[0])]))


@pytest.mark.parametrize("fn", [_numpy_02, _python_random_02], ids=["numpy", "random"])
def test_draws_from_numpy_or_random_get_no_name_and_a_true_property_message(fn):
    inline, graded = _both("02.sample_next_token", fn)
    for report in (inline, graded):
        assert report.status == "failed" and report.mistake is None, report.mistake
        assert "same seed, same tokens" in report.failed_properties
        assert "numpy or Python's random module" in report.message


# ---------------------------------------------------------------------------------------------------
# The real grader: a learner's notebook, graded in the sandboxed worker process
# ---------------------------------------------------------------------------------------------------


def test_the_sandboxed_grader_names_a_forgotten_generator(tmp_path):
    """The by-value path above runs the worker's code in this process; here the real worker (its own
    process, sandboxed when bubblewrap is usable) grades a notebook whose sampler forgets the generator."""
    import json
    import re
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    nb = json.loads((root / "solutions" / "02_softmax_sampling.ipynb").read_text(encoding="utf-8"))
    for folder, edit in (("forgot", lambda s: re.sub(r",\s*generator=generator", "", s)), ("right", lambda s: s)):
        cells = json.loads(json.dumps(nb))
        hits = 0
        for c in cells["cells"]:
            src = "".join(c["source"])
            if c["cell_type"] == "code" and src.startswith("# EXERCISE: 02.sample_next_token"):
                c["source"], hits = edit(src), hits + 1
                assert (c["source"] != src) == (folder == "forgot") and "torch.rand(" in src
        assert hits == 1
        (tmp_path / "subs" / folder).mkdir(parents=True)
        (tmp_path / "subs" / folder / "02_softmax_sampling.ipynb").write_text(json.dumps(cells), encoding="utf-8")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "course_lib", "grade", str(tmp_path / "subs"), "--out", str(out),
                        "--jobs", "1", "--units", "02", "--quiet"], cwd=root, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    def sampler(student):
        found = []

        def walk(x):
            if isinstance(x, dict):
                if x.get("exercise") == "02.sample_next_token" and "status" in x:
                    found.append(x)
                for v in x.values():
                    walk(v)
            elif isinstance(x, list):
                for v in x:
                    walk(v)

        walk(json.loads((out / "results" / f"{student}.json").read_text(encoding="utf-8")))
        assert found
        return found[0]

    forgot, right = sampler("forgot"), sampler("right")
    assert (forgot["status"], forgot["points"], forgot["mistake"]) == ("failed", 0.0, "ignores the generator")
    assert (right["status"], right["points"], right["mistake"]) == ("passed", 3.0, None)
