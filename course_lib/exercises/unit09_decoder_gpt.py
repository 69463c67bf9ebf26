"""Exercises of unit 09: decoder-only transformers (GPT).

Four exercises follow the life of a GPT: make the training targets (``lm_targets``), turn logits
into a token with the usual knobs (``sample_next_token``), run the generation loop
(``TextGenerator``, a module whose forward pass generates) and make it fast with a KV cache
(``attend_with_cache``).

The models in the cases are tiny random GPTs whose weights are scaled up so that their
predictions depend strongly on the context (a freshly initialised GPT predicts an almost uniform
distribution, which would hide mistakes such as reading the wrong position's logits).
"""

from __future__ import annotations

import torch
from torch import nn

from .. import generation as G
from ..attention import causal_mask, scaled_dot_product_attention
from ..models import GPT, GPTConfig
from .core import Alternative, Case, Exercise, Forbidden, GeneratorSeed, KnownMistake, ModuleInputs, Property
from .registry import register
from .core import draw_seed as _seed  # shared case helpers

NOTEBOOK = "09_decoder_gpt"


# ---------------------------------------------------------------------------------------------------
# 09.lm_targets
# ---------------------------------------------------------------------------------------------------


def lm_targets(tokens: torch.Tensor, pad_id: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets of a batch of token sequences.

    A language model reads ``tokens[:, :t+1]`` and must predict ``tokens[:, t+1]``, so::

        inputs  = tokens[:, :-1]    x_0 .. x_{L-2}      (B, L-1)
        targets = tokens[:, 1:]     x_1 .. x_{L-1}      (B, L-1)   target t = the token after input t

    When ``pad_id`` is given, targets equal to ``pad_id`` become ``-100``, the index that
    ``cross_entropy(..., ignore_index=-100)`` skips: nobody should be trained to predict padding.
    """
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.shape[1] < 2:
        got = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise ValueError(f"tokens must be a LongTensor of shape (B, L) with L >= 2, got {got}")
    inputs = tokens[:, :-1]  # (B, L-1)
    targets = tokens[:, 1:].clone()  # (B, L-1), shifted left by one
    if pad_id is not None:
        targets[targets == pad_id] = -100
    return inputs, targets


def targets_not_shifted(tokens, pad_id=None):
    inputs, _ = lm_targets(tokens, pad_id)
    targets = inputs.clone()
    if pad_id is not None:
        targets[targets == pad_id] = -100
    return inputs, targets


def targets_shifted_wrong_way(tokens, pad_id=None):
    inputs, targets = tokens[:, 1:], tokens[:, :-1].clone()
    if pad_id is not None:
        targets[targets == pad_id] = -100
    return inputs, targets


def targets_rolled(tokens, pad_id=None):
    targets = torch.roll(tokens, shifts=-1, dims=1)
    if pad_id is not None:
        targets = targets.masked_fill(targets == pad_id, -100)
    return tokens.clone(), targets


def targets_padding_kept(tokens, pad_id=None):
    return tokens[:, :-1], tokens[:, 1:].clone()


def targets_pad_where_input_is_pad(tokens, pad_id=None):
    inputs, targets = tokens[:, :-1], tokens[:, 1:].clone()
    if pad_id is not None:
        targets[inputs == pad_id] = -100
    return inputs, targets


def _padded_batch(gen, B, L, V, pad_id):
    tokens = torch.randint(pad_id + 1, V, (B, L), generator=gen)  # (B, L), no padding yet
    lengths = torch.randint(2, L + 1, (B,), generator=gen)
    lengths[0] = L - 1  # one row with exactly one pad at the end
    lengths[1] = max(2, L // 2)  # and one with several
    for b in range(B):
        tokens[b, int(lengths[b]):] = pad_id
    return tokens


def _lm_targets_cases(gen, hidden):
    cases = [Case((torch.tensor([[5, 1, 4, 1, 3]]),), {}, "shift", "one sequence of 5 tokens")]
    for B, L, V in [(3, 7, 20)] + ([(8, 16, 50), (2, 2, 5)] if hidden else []):
        cases.append(Case((torch.randint(0, V, (B, L), generator=gen),), {}, "shift", f"a ({B}, {L}) batch"))
    for B, L, V in [(3, 6, 12)] + ([(6, 12, 30), (4, 9, 8)] if hidden else []):
        cases.append(Case((_padded_batch(gen, B, L, V, 0),), {"pad_id": 0}, "padding",
                          f"a ({B}, {L}) batch right-padded with pad_id=0"))
    return cases


LM_TARGETS = Exercise(
    id="09.lm_targets", notebook=NOTEBOOK, function="lm_targets", points=2,
    title="Next-token inputs and targets", minutes=5,
    reference=lm_targets, make_cases=_lm_targets_cases,
    mistakes=[
        KnownMistake("targets not shifted",
                     "Your targets equal your inputs, so the model would learn to copy the token it "
                     "already sees. The target at position t is the NEXT token: targets = tokens[:, 1:].",
                     targets_not_shifted),
        KnownMistake("shifted the wrong way",
                     "You shifted in the wrong direction: your inputs are tokens[:, 1:] and your targets "
                     "tokens[:, :-1], so the model would predict the PREVIOUS token. Use "
                     "inputs = tokens[:, :-1], targets = tokens[:, 1:].",
                     targets_shifted_wrong_way),
        KnownMistake("wrapped around with torch.roll",
                     "torch.roll wraps around: the last target becomes the FIRST token of the sequence, "
                     "which does not follow the last input. Slice instead: the inputs drop the last "
                     "token and the targets drop the first (both have length L-1).",
                     targets_rolled),
        KnownMistake("padding not ignored",
                     "Targets that are padding must become -100 (the ignore_index of the loss), "
                     "otherwise the model is trained to predict <pad>: targets[targets == pad_id] = -100. "
                     "(If you wrote `if pad_id:`, that is False for pad_id=0: test `if pad_id is not None:`.)",
                     targets_padding_kept),
        KnownMistake("padding looked up in the inputs",
                     "You set a target to -100 where the INPUT is padding. What must be ignored is a "
                     "target that is padding (the last real input's target is the first pad): "
                     "targets[targets == pad_id] = -100.",
                     targets_pad_where_input_is_pad),
    ],
)


# ---------------------------------------------------------------------------------------------------
# 09.sample_next_token
# ---------------------------------------------------------------------------------------------------

COURSE_SAMPLERS = Forbidden(
    "course_lib's sampler and filters (course_lib.generation)",
    ("course_lib.generation.sample_next_token", "course_lib.generation.top_k_filter",
     "course_lib.generation.top_p_filter"),
    "this exercise asks you to write the temperature, top-k and top-p steps yourself",
)


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the logits >= the k-th largest of their row, set the others to -inf."""
    if k >= logits.shape[-1]:
        return logits.clone()
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1) the k-th largest
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability mass is >= p.

    In sorted order (most likely first) token j is kept when the mass BEFORE it is < p; so the
    top token is always kept and the token that crosses p is kept too.
    """
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
    probs = torch.softmax(sorted_logits, dim=-1)  # (B, V)
    mass_before = probs.cumsum(dim=-1) - probs  # (B, V) exclusive cumulative sum
    drop_sorted = mass_before >= p
    drop_sorted[..., 0] = False  # the most likely token always stays (guards against rounding)
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def sample_next_token(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                      top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """The exact procedure of the exercise (course_lib.generation.sample_next_token does the same).

    ``temperature == 0``: return ``logits.argmax(-1)`` (greedy). Otherwise, in this order::

        x     = logits / temperature
        x     = top_k_filter(x, top_k)     if top_k is not None
        x     = top_p_filter(x, top_p)     if top_p is not None
        probs = softmax(x)
        token = torch.multinomial(probs, 1, generator=generator)[:, 0]      (B,)   ([0] for (V,))
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    x = logits / temperature  # (B, V)
    if top_k is not None:
        x = top_k_filter(x, top_k)
    if top_p is not None:
        x = top_p_filter(x, top_p)
    return _draw(x, generator)


def _draw(scaled: torch.Tensor, generator) -> torch.Tensor:
    """softmax, then one torch.multinomial draw per row with the given generator."""
    probs = torch.softmax(scaled, dim=-1)
    if probs.dim() == 1:
        return torch.multinomial(probs, 1, generator=generator)[0]  # ()
    return torch.multinomial(probs, 1, generator=generator)[:, 0]  # (B,)


def _top_k_plus_one(logits, k):
    V = logits.shape[-1]
    if k + 1 >= V:
        return logits.clone()
    kth = torch.topk(logits, k + 1, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def _top_p_variant(logits, p, keep_rule, descending=True, guard_top=True):
    """Top-p filters with a configurable (possibly wrong) keep rule, for the known mistakes."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=descending)
    probs = torch.softmax(sorted_logits, dim=-1)
    cum = probs.cumsum(dim=-1)  # inclusive
    keep = keep_rule(cum, cum - probs, p)  # (B, V) in sorted order
    if guard_top:
        keep[..., 0] = True
    drop = torch.zeros_like(keep).scatter(-1, order, ~keep)
    return logits.masked_fill(drop, float("-inf"))


def _sample_variant(logits, temperature=1.0, top_k=None, top_p=None, generator=None, *, scale="divide",
                    top_k_fn=None, top_p_fn=None, temperature_last=False):
    if temperature == 0:
        return logits.argmax(dim=-1)
    top_k_fn = top_k_fn or top_k_filter
    top_p_fn = top_p_fn or top_p_filter
    scaled = logits * temperature if scale == "multiply" else logits / temperature
    if temperature_last:
        scaled = logits
    if top_k is not None:
        scaled = top_k_fn(scaled, top_k)
    if top_p is not None:
        scaled = top_p_fn(scaled, top_p)
    if temperature_last:
        scaled = scaled / temperature
    return _draw(scaled, generator)


def sample_temperature_multiplied(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    return _sample_variant(logits, temperature, top_k, top_p, generator, scale="multiply")


def sample_top_k_plus_one(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    return _sample_variant(logits, temperature, top_k, top_p, generator, top_k_fn=_top_k_plus_one)


def sample_top_p_tail(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    rule = lambda cum, before, p: before >= p  # noqa: E731 - keeps the tokens OUTSIDE the nucleus
    fn = lambda x, p: _top_p_variant(x, p, rule, guard_top=False)  # noqa: E731
    return _sample_variant(logits, temperature, top_k, top_p, generator, top_p_fn=fn)


def sample_top_p_ascending(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    rule = lambda cum, before, p: before < p  # noqa: E731 - right rule, but sorted from the least likely
    fn = lambda x, p: _top_p_variant(x, p, rule, descending=False)  # noqa: E731
    return _sample_variant(logits, temperature, top_k, top_p, generator, top_p_fn=fn)


def sample_top_p_stops_early(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    rule = lambda cum, before, p: cum <= p  # noqa: E731 - drops the token that crosses p
    fn = lambda x, p: _top_p_variant(x, p, rule)  # noqa: E731
    return _sample_variant(logits, temperature, top_k, top_p, generator, top_p_fn=fn)


def sample_temperature_after_filters(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    return _sample_variant(logits, temperature, top_k, top_p, generator, temperature_last=True)


def _sampling_cases(gen, hidden):
    B, V = (160, 16) if hidden else (120, 10)

    def logits():
        return torch.randn(B, V, generator=gen) * 2.0  # (B, V)

    specs = [
        ("temperature", dict(temperature=0.7), "temperature 0.7"),
        ("temperature", dict(temperature=0.0), "temperature 0: greedy"),
        ("top-k", dict(temperature=1.4, top_k=3), "temperature 1.4, top_k=3"),
        ("top-p", dict(temperature=1.5, top_p=0.6), "temperature 1.5, top_p=0.6"),
        ("top-p", dict(temperature=1.0, top_p=0.3), "top_p=0.3 (often only the top token)"),
        ("combined", dict(temperature=0.8, top_k=5, top_p=0.8), "temperature 0.8, top_k=5, top_p=0.8"),
    ]
    if hidden:
        specs += [
            ("temperature", dict(temperature=2.0), "temperature 2"),
            ("top-k", dict(temperature=0.5, top_k=1), "top_k=1 is greedy"),
            ("top-k", dict(temperature=1.2, top_k=7), "top_k=7"),
            ("top-p", dict(temperature=0.6, top_p=0.9), "temperature 0.6, top_p=0.9"),
            ("combined", dict(temperature=1.3, top_k=4, top_p=0.7), "temperature 1.3, top_k=4, top_p=0.7"),
        ]
    cases = []
    for group, kwargs, note in specs:
        cases.append(Case((logits(),), dict(kwargs, generator=GeneratorSeed(_seed(gen))), group, f"{B} rows, {note}"))
    one = torch.randn(V, generator=gen) * 2.0  # (V,)
    cases.append(Case((one,), dict(temperature=0.9, top_k=4, generator=GeneratorSeed(_seed(gen))), "combined",
                      "a single row of logits (V,): return a 0-d tensor"))
    # k >= V keeps every token (torch.topk itself refuses k > V); drawn last so that the cases above stay as they were
    cases.append(Case((logits(),), dict(temperature=1.1, top_k=V + 3, generator=GeneratorSeed(_seed(gen))), "top-k",
                      f"{B} rows, top_k={V + 3} > V={V}: every token is kept"))
    return cases


def _sample_in_support(case, out, derived) -> bool:
    """Every sampled token must survive top-k: it is among the k largest logits of its row."""
    logits = case.args[0]
    k = case.kwargs.get("top_k")
    if k is None or not isinstance(out, torch.Tensor) or out.shape != logits.shape[:-1]:
        return True  # a wrong shape is reported as such, not as a top-k problem
    kth = torch.topk(logits, min(k, logits.shape[-1]), dim=-1).values[..., -1]
    chosen = logits.gather(-1, out.unsqueeze(-1)).squeeze(-1)
    return bool((chosen >= kth).all())


SAMPLE = Exercise(
    id="09.sample_next_token", notebook=NOTEBOOK, function="sample_next_token", points=4,
    title="Temperature, top-k and top-p sampling", minutes=25,
    reference=sample_next_token, make_cases=_sampling_cases, forbidden=[COURSE_SAMPLERS],
    properties=[Property("samples stay inside the top k",
                         "with top_k=k every sampled token must be one of the k most likely tokens",
                         _sample_in_support, fires_for=("top-k keeps k+1 tokens",))],
    mistakes=[
        KnownMistake("temperature multiplied instead of divided",
                     "You multiply the logits by the temperature. Divide them: logits / T, so that a "
                     "temperature above 1 flattens the distribution and below 1 sharpens it.",
                     sample_temperature_multiplied),
        KnownMistake("top-k keeps k+1 tokens",
                     "Your top-k filter keeps one token too many (an off-by-one in the threshold): keep a "
                     "logit when it is >= the k-th largest, torch.topk(logits, k).values[..., -1:].",
                     sample_top_k_plus_one),
        KnownMistake("top-p keeps the wrong side of the threshold",
                     "Your nucleus is inverted: you keep the unlikely tail and drop the most likely "
                     "tokens. Sort descending and DROP a token when the mass before it is already >= p.",
                     sample_top_p_tail),
        KnownMistake("top-p sorted ascending (drops the top token)",
                     "You sorted the probabilities in increasing order (torch.sort's default), so your "
                     "nucleus collects the least likely tokens and usually drops the most likely one. "
                     "Use torch.sort(..., descending=True).",
                     sample_top_p_ascending),
        KnownMistake("top-p stops before reaching p",
                     "You keep a token only when the cumulative probability INCLUDING it is <= p, so the "
                     "token that crosses p is dropped and the kept mass is below p. Keep token j when the "
                     "mass BEFORE it is < p (exclusive cumsum: cumsum - probs).",
                     sample_top_p_stops_early),
        KnownMistake("temperature applied after the filters",
                     "Apply the temperature first, then top-k, then top-p: the nucleus must be computed "
                     "from the tempered probabilities softmax(logits / T).",
                     sample_temperature_after_filters),
    ],
)


# ---------------------------------------------------------------------------------------------------
# 09.TextGenerator (the generation loop)
# ---------------------------------------------------------------------------------------------------
#
# The autograder hands inputs to the learner's code by value (tensors, numbers, module weights), never
# as live objects, so a model cannot be an argument. The loop is therefore the forward pass of a small
# wrapper module that owns the GPT (``self.model``): the grader rebuilds it from its config and weights.

COURSE_GENERATE = Forbidden(
    "course_lib's generate (course_lib.generation.generate)",
    ("course_lib.generation.generate",),
    "this exercise asks you to write the generation loop yourself",
)


def make_test_gpt(seed: int, vocab_size: int = 13, block_size: int = 8, n_layers: int = 2, n_heads: int = 2,
                  d_model: int = 16) -> GPT:
    """A tiny GPT whose predictions depend strongly on the context (for the exercise cases).

    Built under a private RNG seeded with ``seed`` (the global RNG is left untouched); the token
    embeddings (tied to the unembedding) and the attention/MLP weights are scaled up so the logits
    are large and context-dependent, not nearly uniform as after GPT-2's 0.02 initialisation.
    """
    config = GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layers=n_layers, n_heads=n_heads,
                       d_model=d_model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT(config)
        with torch.no_grad():
            model.tok_emb.weight.normal_(0.0, 1.0)
            model.pos_emb.weight.normal_(0.0, 1.0)
            for block in model.blocks:
                for lin in (block.attn.W_Q, block.attn.W_K, block.attn.W_V, block.attn.W_O,
                            block.mlp.up, block.mlp.down):
                    lin.weight.normal_(0.0, 1.5 / lin.in_features ** 0.5)
    return model.eval()


class TextGenerator(nn.Module):
    """A GPT plus the loop that continues a prompt: calling it generates.

    ::

        repeat max_new_tokens times:
            context = ids[:, -block_size:]                 (B, <= block_size)  what still fits
            logits  = model(context)[:, -1, :]             (B, V)  the prediction after the last token
            next    = sample_next_token(logits, temperature, top_k, top_p, generator)   (B,)
            ids     = concat(ids, next)                    (B, T + 1)

    Returns the prompt followed by the new tokens, (B, T + max_new_tokens). Runs without gradients.
    (``course_lib.generation.generate`` is the same loop plus a KV cache.)
    """

    def __init__(self, vocab_size: int, block_size: int, n_layers: int, n_heads: int, d_model: int):
        super().__init__()
        self.model = GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layers=n_layers,
                                   n_heads=n_heads, d_model=d_model))

    def forward(self, input_ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                top_k: int | None = None, top_p: float | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        block_size = self.model.config.block_size
        ids = input_ids  # (B, T)
        with torch.no_grad():
            for _ in range(max_new_tokens):
                context = ids[:, -block_size:]  # (B, <= block_size) crop to the context window
                logits = self.model(context)[:, -1, :]  # (B, V) the last position predicts the next token
                next_token = G.sample_next_token(logits, temperature, top_k=top_k, top_p=top_p,
                                                 generator=generator)  # (B,)
                ids = torch.cat([ids, next_token[:, None]], dim=1)  # (B, T + 1)
        return ids


class _GeneratorMistake(TextGenerator):
    window, position, keep_prompt, greedy = "newest", -1, True, False

    def forward(self, input_ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
        block_size = self.model.config.block_size
        ids = input_ids
        with torch.no_grad():
            for _ in range(max_new_tokens):
                if self.window == "newest":
                    context = ids[:, -block_size:]
                elif self.window == "oldest":
                    context = ids[:, :block_size]
                else:  # the last token only
                    context = ids[:, -1:]
                logits = self.model(context)[:, self.position, :]
                if self.greedy:
                    nxt = logits.argmax(dim=-1)
                else:
                    nxt = G.sample_next_token(logits, temperature, top_k=top_k, top_p=top_p, generator=generator)
                ids = torch.cat([ids, nxt[:, None]], dim=1)
        return ids if self.keep_prompt else ids[:, input_ids.shape[1]:]


class GeneratorOldestWindow(_GeneratorMistake):
    window = "oldest"


class GeneratorFirstPosition(_GeneratorMistake):
    position = 0


class GeneratorLastTokenOnly(_GeneratorMistake):
    window = "last token only"


class GeneratorNewTokensOnly(_GeneratorMistake):
    keep_prompt = False


class GeneratorAlwaysGreedy(_GeneratorMistake):
    greedy = True


def _generator_cases(gen, hidden):
    config = dict(vocab_size=13, block_size=8, n_layers=2, n_heads=2, d_model=16)
    specs = [
        ("inside the window", 3, 4, (1.0, None, None), "prompt of 3, 4 new tokens, temperature 1"),
        ("past the window", 5, 9, (1.0, None, None), "prompt of 5, 9 new tokens: more than block_size=8"),
        ("knobs", 4, 6, (0.0, None, None), "temperature 0 (greedy), 6 new tokens"),
        ("knobs", 3, 7, (1.5, 5, 0.8), "temperature 1.5, top_k=5 and top_p=0.8 together"),
    ]
    if hidden:
        specs += [
            ("inside the window", 1, 7, (0.8, None, None), "prompt of 1 token, 7 new tokens"),
            ("past the window", 8, 6, (1.2, None, None), "prompt fills the window, 6 new tokens"),
            ("past the window", 2, 14, (0.0, None, None), "greedy, 14 new tokens"),
            ("knobs", 3, 8, (0.9, 4, 0.9), "temperature 0.9, top_k=4, top_p=0.9"),
            ("knobs", 4, 8, (1.2, 2, 0.95), "temperature 1.2, top_k=2 (it binds), top_p=0.95"),
        ]
    cases = []
    for group, T, n_new, (temperature, top_k, top_p), note in specs:
        gpt = make_test_gpt(_seed(gen), **config)
        state = {f"model.{k}": v.detach().clone() for k, v in gpt.state_dict().items()}
        B = 4
        prompt = torch.randint(0, config["vocab_size"], (B, T), generator=gen)
        seed = GeneratorSeed(_seed(gen)) if temperature != 0 else None
        args = (prompt, n_new, temperature, top_k, top_p, seed)
        cases.append(Case((ModuleInputs(dict(config), state, args),), {}, group, f"{B} prompts; {note}"))
    return cases


def _keeps_prompt(case, out, derived) -> bool:
    prompt = case.args[0].args[0]
    return isinstance(out, torch.Tensor) and out.dim() == 2 and bool(
        (out[:, : prompt.shape[1]] == prompt).all())


TEXT_GENERATOR = Exercise(
    id="09.TextGenerator", notebook=NOTEBOOK, function="TextGenerator", points=3,
    title="The generation loop", minutes=15, kind="module",
    reference=TextGenerator, make_cases=_generator_cases, forbidden=[COURSE_GENERATE],
    properties=[Property("the prompt is kept", "the output starts with the prompt, unchanged", _keeps_prompt,
                         fires_for=("prompt dropped from the output",))],
    mistakes=[
        KnownMistake("context cropped to the oldest tokens",
                     "Once the sequence is longer than block_size you keep ids[:, :block_size], the OLDEST "
                     "tokens, so the model never sees what it just wrote. Keep the newest: ids[:, -block_size:].",
                     GeneratorOldestWindow),
        KnownMistake("logits of the first position",
                     "You sample from logits[:, 0], the prediction after the FIRST token. The next token "
                     "is predicted at the last position: logits[:, -1, :].",
                     GeneratorFirstPosition),
        KnownMistake("only the last token fed back",
                     "You run the model on the last token alone, so it forgets the rest of the context "
                     "(without a KV cache, every step must see the whole window ids[:, -block_size:]).",
                     GeneratorLastTokenOnly),
        KnownMistake("prompt dropped from the output",
                     "Return the prompt followed by the new tokens, shape (B, T + max_new_tokens).",
                     GeneratorNewTokensOnly),
        KnownMistake("always greedy",
                     "You take the argmax at every step, whatever the temperature. Sample with "
                     "sample_next_token(logits, temperature, top_k, top_p, generator).",
                     GeneratorAlwaysGreedy),
    ],
)


# ---------------------------------------------------------------------------------------------------
# 09.attend_with_cache
# ---------------------------------------------------------------------------------------------------


def attend_with_cache(q_new: torch.Tensor, k_new: torch.Tensor, v_new: torch.Tensor, k_cache: torch.Tensor,
                      v_cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One attention step of a decoder with a KV cache.

    The cache holds the keys and values of the ``T_past`` tokens already processed; the step brings
    ``T_new`` new tokens (1 while generating, the whole prompt at the first step)::

        k_all = concat(k_cache, k_new)   along time       (B, H, T_past + T_new, Dh)
        v_all = concat(v_cache, v_new)
        out   = softmax(q_new k_all^T / sqrt(Dh) + mask) v_all                (B, H, T_new, Dh)

    New token ``i`` sits at absolute position ``T_past + i``: it may attend to keys
    ``0 .. T_past + i`` (all of the past, and the new tokens up to itself), i.e. the causal mask
    shifted right by ``T_past``: ``causal_mask(T_new, offset=T_past)``. Returns
    ``(out, k_all, v_all)``; ``k_all, v_all`` are the cache for the next step.
    """
    for name, t in (("q_new", q_new), ("k_new", k_new), ("v_new", v_new), ("k_cache", k_cache),
                    ("v_cache", v_cache)):
        if t.dim() != 4:
            raise ValueError(f"{name} must have shape (B, H, T, Dh), got {tuple(t.shape)}")
    if k_cache.shape != v_cache.shape:
        raise ValueError(f"k_cache {tuple(k_cache.shape)} and v_cache {tuple(v_cache.shape)} must have the same shape")
    T_past, T_new = k_cache.shape[-2], q_new.shape[-2]
    k_all = torch.cat([k_cache, k_new], dim=-2)  # (B, H, T_past + T_new, Dh)
    v_all = torch.cat([v_cache, v_new], dim=-2)  # (B, H, T_past + T_new, Dh)
    mask = causal_mask(T_new, offset=T_past)  # (T_new, T_past + T_new)
    out = scaled_dot_product_attention(q_new, k_all, v_all, mask=mask)  # (B, H, T_new, Dh)
    return out, k_all, v_all


def cache_new_keys_dropped(q_new, k_new, v_new, k_cache, v_cache):
    T_past = k_cache.shape[-2]
    if T_past == 0:
        out = torch.zeros_like(q_new)
    else:
        out = scaled_dot_product_attention(q_new, k_cache, v_cache)
    return out, k_cache.clone(), v_cache.clone()


def cache_mask_without_offset(q_new, k_new, v_new, k_cache, v_cache):
    T_past, T_new = k_cache.shape[-2], q_new.shape[-2]
    k_all = torch.cat([k_cache, k_new], dim=-2)
    v_all = torch.cat([v_cache, v_new], dim=-2)
    mask = torch.ones(T_new, T_past + T_new, dtype=torch.bool).tril()  # top-left aligned
    return scaled_dot_product_attention(q_new, k_all, v_all, mask=mask), k_all, v_all


def cache_no_mask(q_new, k_new, v_new, k_cache, v_cache):
    k_all = torch.cat([k_cache, k_new], dim=-2)
    v_all = torch.cat([v_cache, v_new], dim=-2)
    return scaled_dot_product_attention(q_new, k_all, v_all), k_all, v_all


def cache_prepended(q_new, k_new, v_new, k_cache, v_cache):
    T_past, T_new = k_cache.shape[-2], q_new.shape[-2]
    k_all = torch.cat([k_new, k_cache], dim=-2)
    v_all = torch.cat([v_new, v_cache], dim=-2)
    mask = causal_mask(T_new, offset=T_past)
    return scaled_dot_product_attention(q_new, k_all, v_all, mask=mask), k_all, v_all


def _cache_cases(gen, hidden):
    specs = [
        ("one new token", 2, 2, 4, 1, 8, "4 cached tokens, 1 new"),
        ("prompt", 2, 2, 0, 4, 8, "empty cache, a prompt of 4 tokens"),
        ("several new tokens", 1, 2, 3, 2, 4, "3 cached tokens, 2 new"),
    ]
    if hidden:
        specs += [
            ("one new token", 3, 4, 9, 1, 16, "9 cached tokens, 1 new"),
            ("prompt", 2, 4, 0, 7, 8, "empty cache, a prompt of 7 tokens"),
            ("several new tokens", 2, 3, 5, 3, 8, "5 cached tokens, 3 new"),
        ]
    cases = []
    for group, B, H, T_past, T_new, Dh, note in specs:
        def r(T):
            return torch.randn(B, H, T, Dh, generator=gen)
        cases.append(Case((r(T_new), r(T_new), r(T_new), r(T_past), r(T_past)), {}, group, note))
    return cases


def _matches_full_attention(case, out, derived) -> bool:
    """The cached step equals full causal attention over the whole sequence (its last T_new rows)."""
    q_new, k_new, v_new, k_cache, v_cache = case.args
    T_past, T_new = k_cache.shape[-2], q_new.shape[-2]
    k = torch.cat([k_cache, k_new], dim=-2)
    v = torch.cat([v_cache, v_new], dim=-2)
    q = torch.cat([torch.zeros_like(k_cache), q_new], dim=-2)  # past queries do not matter
    full = scaled_dot_product_attention(q, k, v, mask=causal_mask(T_past + T_new))[..., T_past:, :]
    return bool(torch.allclose(out[0], full, atol=1e-5))


ATTEND_WITH_CACHE = Exercise(
    id="09.attend_with_cache", notebook=NOTEBOOK, function="attend_with_cache", points=3,
    title="An attention step with a KV cache", minutes=15,
    reference=attend_with_cache, make_cases=_cache_cases,
    properties=[Property("same as attention over the whole sequence",
                         "the output must equal causal attention over cache + new tokens (its last T_new rows)",
                         _matches_full_attention,
                         fires_for=("causal mask without the offset", "new keys not added to the cache",
                                    "new keys put in front of the cache", "no causal mask among the new tokens",
                                    "causal mask offset off by one", "mask inverted", "scores not divided by sqrt(Dh)",
                                    "only the last new token's output", "values built from the key cache",
                                    "softmax over the queries"))],
    mistakes=[
        KnownMistake("new keys not added to the cache",
                     "Your new tokens attend only to the cached keys (and the cache you return does not "
                     "grow). Concatenate first: k_all = torch.cat([k_cache, k_new], dim=-2), same for v.",
                     cache_new_keys_dropped),
        KnownMistake("causal mask without the offset",
                     "Your mask is the top-left (T_new, T_past + T_new) corner of a causal mask (this is "
                     "also what is_causal=True does), so the new tokens cannot see most of the past. New "
                     "token i sits at position T_past + i: use causal_mask(T_new, offset=T_past).",
                     cache_mask_without_offset),
        KnownMistake("no causal mask among the new tokens",
                     "With several new tokens (the prompt step) each one may only see the new tokens up "
                     "to itself: apply causal_mask(T_new, offset=T_past).",
                     cache_no_mask),
        KnownMistake("new keys put in front of the cache",
                     "The cache is in time order: append the new keys and values AFTER the cached ones, "
                     "torch.cat([k_cache, k_new], dim=-2).",
                     cache_prepended),
    ],
)


# ---------------------------------------------------------------------------------------------------
# Alternatives (correct, written differently) and more known mistakes, per exercise
# ---------------------------------------------------------------------------------------------------


def lm_targets_with_where(tokens, pad_id=None):
    inputs, targets = tokens.narrow(1, 0, tokens.shape[1] - 1), tokens.narrow(1, 1, tokens.shape[1] - 1)
    if pad_id is not None:
        targets = torch.where(targets == pad_id, torch.full_like(targets, -100), targets)  # a new tensor
    return inputs, targets


def lm_targets_row_by_row(tokens, pad_id=None):
    rows_in, rows_out = [], []
    for row in tokens:
        rows_in.append(row[:-1])
        rows_out.append(torch.tensor([-100 if pad_id is not None and int(t) == pad_id else int(t)
                                      for t in row[1:]], dtype=torch.long))
    return torch.stack(rows_in), torch.stack(rows_out)


def sample_with_sort_and_where(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    if temperature == 0:
        return torch.argmax(logits, dim=-1)
    x = logits / temperature
    neg_inf = torch.tensor(float("-inf"))
    if top_k is not None and top_k < x.shape[-1]:
        kth = torch.sort(x, dim=-1, descending=True).values[..., top_k - 1:top_k]  # (B, 1)
        x = torch.where(x >= kth, x, neg_inf)
    if top_p is not None:
        sorted_x, order = torch.sort(x, dim=-1, descending=True)
        probs = torch.softmax(sorted_x, dim=-1)
        before = torch.cumsum(probs, dim=-1) - probs
        keep_sorted = before < top_p
        keep_sorted[..., 0] = True
        keep = keep_sorted.gather(-1, torch.argsort(order, dim=-1))  # back to vocabulary order
        x = torch.where(keep, x, neg_inf)
    probs = torch.softmax(x, dim=-1)
    flat = probs.reshape(-1, probs.shape[-1])
    draw = torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])
    return draw


def sample_with_row_loop_filters(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    if temperature == 0:
        return logits.max(dim=-1).indices
    rows = logits.reshape(-1, logits.shape[-1]) / temperature  # (B, V)
    filtered = []
    for row in rows:
        row = row.clone()
        if top_k is not None and top_k < row.numel():
            row[row < row.topk(top_k).values.min()] = float("-inf")
        if top_p is not None:
            vals, idx = row.sort(descending=True)
            p = torch.softmax(vals, dim=0)
            mass_before = p.cumsum(0) - p
            drop_idx = idx[1:][mass_before[1:] >= top_p]
            row[drop_idx] = float("-inf")
        filtered.append(row)
    probs = torch.softmax(torch.stack(filtered), dim=-1)
    out = torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)
    return out.reshape(logits.shape[:-1])


def sample_top_k_before_temperature_dropped(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    """Wrong: with both knobs set, only top-k is applied (an if / elif)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    x = logits / temperature
    if top_k is not None:
        x = top_k_filter(x, top_k)
    elif top_p is not None:
        x = top_p_filter(x, top_p)
    return _draw(x, generator)


class GeneratorPreallocated(TextGenerator):
    """Output buffer allocated once and filled column by column."""

    def forward(self, input_ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
        B, T = input_ids.shape
        bs = self.model.config.block_size
        out = torch.empty(B, T + max_new_tokens, dtype=torch.long)
        out[:, :T] = input_ids
        with torch.no_grad():
            for t in range(T, T + max_new_tokens):
                logits = self.model(out[:, max(0, t - bs):t])  # (B, <= bs, V)
                out[:, t] = sample_next_token(logits[:, -1], temperature, top_k, top_p, generator)
        return out


class GeneratorListOfColumns(TextGenerator):
    """New tokens collected in a list; the context rebuilt from the prompt and the list each step."""

    @torch.no_grad()
    def forward(self, input_ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
        new = []
        for _ in range(max_new_tokens):
            ids = torch.cat([input_ids] + new, dim=1)
            context = ids[:, max(0, ids.shape[1] - self.model.config.block_size):]
            last = self.model(context)[:, -1]
            new.append(sample_with_sort_and_where(last, temperature, top_k, top_p, generator).unsqueeze(1))
        return torch.cat([input_ids] + new, dim=1)


class GeneratorKnobsDropped(_GeneratorMistake):
    """Wrong: passes only the temperature on (top_k and top_p ignored)."""

    def forward(self, input_ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
        return TextGenerator.forward(self, input_ids, max_new_tokens, temperature, None, None, generator)


def attend_with_cache_einsum(q_new, k_new, v_new, k_cache, v_cache):
    T_past, T_new = k_cache.shape[-2], q_new.shape[-2]
    k_all = torch.cat((k_cache, k_new), dim=2)
    v_all = torch.cat((v_cache, v_new), dim=2)
    scores = torch.einsum("bhid,bhjd->bhij", q_new, k_all) / q_new.shape[-1] ** 0.5  # (B, H, T_new, T_all)
    future = torch.ones(T_new, T_past + T_new, dtype=torch.bool).triu(diagonal=T_past + 1)
    weights = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
    return torch.einsum("bhij,bhjd->bhid", weights, v_all), k_all, v_all


def attend_with_cache_token_loop(q_new, k_new, v_new, k_cache, v_cache):
    T_past = k_cache.shape[-2]
    k_all = torch.cat([k_cache, k_new], dim=-2)
    v_all = torch.cat([v_cache, v_new], dim=-2)
    rows = []
    for i in range(q_new.shape[-2]):
        n = T_past + i + 1  # keys 0 .. T_past + i
        rows.append(scaled_dot_product_attention(q_new[..., i:i + 1, :], k_all[..., :n, :], v_all[..., :n, :]))
    return torch.cat(rows, dim=-2), k_all, v_all


def cache_old_cache_returned(q_new, k_new, v_new, k_cache, v_cache):
    """Wrong: attends correctly but returns the old cache, which never grows."""
    out, _, _ = attend_with_cache(q_new, k_new, v_new, k_cache, v_cache)
    return out, k_cache.clone(), v_cache.clone()


LM_TARGETS.alternatives = (Alternative("narrow and torch.where", lm_targets_with_where),
                           Alternative("row by row in Python", lm_targets_row_by_row))
SAMPLE.alternatives = (Alternative("sort for the k-th value, torch.where, gather back", sample_with_sort_and_where),
                       Alternative("filters row by row, one batched draw", sample_with_row_loop_filters))
SAMPLE.mistakes = tuple(SAMPLE.mistakes) + (
    KnownMistake("top-p ignored when top-k is set",
                 "With both top_k and top_p given you applied only top-k (an if/elif?). Apply both, in this "
                 "order: temperature, then top-k, then top-p on what top-k left.",
                 sample_top_k_before_temperature_dropped),)
TEXT_GENERATOR.alternatives = (Alternative("a preallocated output filled column by column", GeneratorPreallocated),
                               Alternative("new tokens in a list, own sampler", GeneratorListOfColumns))
TEXT_GENERATOR.mistakes = tuple(TEXT_GENERATOR.mistakes) + (
    KnownMistake("top_k and top_p not passed on",
                 "Your loop passes only the temperature to the sampler, so top_k and top_p have no effect. "
                 "Pass them on: sample_next_token(logits, temperature, top_k=top_k, top_p=top_p, generator=generator).",
                 GeneratorKnobsDropped),)
ATTEND_WITH_CACHE.alternatives = (Alternative("einsum and a triu mask of the future", attend_with_cache_einsum),
                                  Alternative("one new token at a time over its visible keys", attend_with_cache_token_loop))
ATTEND_WITH_CACHE.mistakes = tuple(ATTEND_WITH_CACHE.mistakes) + (
    KnownMistake("old cache returned",
                 "Your attention output is right, but the k_all, v_all you return are the old cache: the next step "
                 "would forget these tokens. Return the concatenated cache, shape (B, H, T_past + T_new, Dh).",
                 cache_old_cache_returned),)



# ---------------------------------------------------------------------------------------------------
# More known mistakes, found by trying learners' answers that appear nowhere in the project (issue 11)
# ---------------------------------------------------------------------------------------------------


def targets_pad_in_inputs_too(tokens, pad_id=None):
    t = tokens.clone()
    if pad_id is not None:
        t[t == pad_id] = -100  # both tensors: the inputs get -100 as well
    return t[:, :-1], t[:, 1:]


def targets_returned_swapped(tokens, pad_id=None):
    inputs, targets = lm_targets(tokens, pad_id)
    return targets, inputs


def targets_as_floats(tokens, pad_id=None):
    inputs, targets = lm_targets(tokens, pad_id)
    return inputs, targets.float() if pad_id is not None else targets  # torch.where(..., -100.0, targets)


def targets_inputs_not_cut(tokens, pad_id=None):
    _, targets = lm_targets(tokens, pad_id)
    return tokens.clone(), targets


def targets_inputs_shifted_too(tokens, pad_id=None):
    _, targets = lm_targets(tokens, pad_id)
    return tokens[:, 1:], targets


LM_TARGETS.mistakes = tuple(LM_TARGETS.mistakes) + (
    KnownMistake("-100 in the inputs too",
                 "Only the TARGETS get -100 (it tells the loss to skip them). The inputs are token ids that the "
                 "embedding looks up, and -100 is not one: keep pad_id in the inputs, replace it in targets only. "
                 "If you did write into the targets only: `tokens[:, 1:]` is a view that shares memory with the "
                 "inputs, so writing -100 into it changes them too; `.clone()` it first.",
                 targets_pad_in_inputs_too),
    KnownMistake("inputs and targets returned in the wrong order",
                 "You return (targets, inputs). The order is (inputs, targets): inputs = tokens[:, :-1] first, "
                 "then targets = tokens[:, 1:].", targets_returned_swapped),
    KnownMistake("targets turned into floats",
                 "Your targets are floats (torch.where with -100.0, or .float()). Class indices for cross_entropy "
                 "are int64: use an int -100, e.g. targets.masked_fill(targets == pad_id, -100).", targets_as_floats),
    KnownMistake("inputs keep the last token",
                 "Your inputs are the whole sequence (B, L). The last token has no next token to predict: "
                 "inputs = tokens[:, :-1], shape (B, L-1), the same length as the targets.", targets_inputs_not_cut),
    KnownMistake("inputs shifted too",
                 "Your inputs are tokens[:, 1:], the same tokens as the targets, so the model would be asked to "
                 "predict the token it is reading. Inputs drop the LAST token: tokens[:, :-1].",
                 targets_inputs_shifted_too),
)


def _top_k_minus_one(logits, k):
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits <= kth, float("-inf"))  # drops the k-th largest itself


def _top_p_unscattered(logits, p):
    sorted_logits, _ = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    drop = probs.cumsum(dim=-1) - probs >= p  # in SORTED order, applied to the unsorted logits
    return logits.masked_fill(drop, float("-inf"))


def sample_temperature_ignored(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    if temperature == 0:
        return logits.argmax(dim=-1)
    return _sample_variant(logits, 1.0, top_k, top_p, generator)


def sample_top_k_minus_one(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    return _sample_variant(logits, temperature, top_k, top_p, generator, top_k_fn=_top_k_minus_one)


def sample_top_p_unscattered(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    return _sample_variant(logits, temperature, top_k, top_p, generator, top_p_fn=_top_p_unscattered)


def sample_always_greedy(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    return logits.argmax(dim=-1)


def sample_kept_column(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    return sample_next_token(logits, temperature, top_k, top_p, generator).unsqueeze(-1)


def sample_top_p_before_top_k(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    if temperature == 0:
        return logits.argmax(dim=-1)
    x = logits / temperature
    if top_p is not None:
        x = top_p_filter(x, top_p)
    if top_k is not None:
        x = top_k_filter(x, top_k)
    return _draw(x, generator)


def _same_seed_same_tokens(case, out, derived) -> bool:
    return isinstance(out, torch.Tensor) and isinstance(derived[0], torch.Tensor) and torch.equal(out, derived[0])


def _call_again(case):
    return (Case(case.args, case.kwargs, case.group, "the same call again, with a fresh generator of the same seed"),)


SAME_SEED_MESSAGE = ("called twice with generators of the same seed, your function returned different tokens: it draws "
                     "random numbers from somewhere other than `generator` (PyTorch's global random state, numpy or "
                     "Python's random module). Draw only with the generator: "
                     "torch.multinomial(probs, 1, generator=generator)")
SAMPLE.properties = tuple(SAMPLE.properties) + (
    Property("same seed, same tokens", SAME_SEED_MESSAGE, _same_seed_same_tokens, _call_again,
             fires_for=("ignores the generator",)),)
SAMPLE.mistakes = tuple(SAMPLE.mistakes) + (
    KnownMistake("temperature ignored",
                 "Your samples do not depend on the temperature: maybe you never divide by it, or you divide the "
                 "PROBABILITIES by it (p / T renormalised is p again). Divide the LOGITS: softmax(logits / T).",
                 sample_temperature_ignored),
    KnownMistake("top-k keeps k-1 tokens",
                 "Your top-k filter drops the k-th largest logit itself (`<=` instead of `<`): keep a logit when it "
                 "is >= the k-th largest, logits.masked_fill(logits < kth, -inf).", sample_top_k_minus_one),
    KnownMistake("top-p mask not put back in vocabulary order",
                 "You computed which tokens to drop in SORTED order and applied that mask to the unsorted logits, "
                 "so you drop the wrong tokens. Scatter the mask back first: "
                 "drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted).", sample_top_p_unscattered),
    KnownMistake("always greedy",
                 "You return the most likely token whatever the temperature. Only temperature 0 is greedy; "
                 "otherwise sample: torch.multinomial(softmax(x), 1, generator=generator).", sample_always_greedy),
    KnownMistake("shape (B, 1) instead of (B,)",
                 "torch.multinomial(probs, 1) has shape (B, 1): return one id per row, shape (B,), e.g. "
                 "torch.multinomial(probs, 1, generator=generator)[:, 0] (or [..., 0], which also works for (V,)).",
                 sample_kept_column),
    KnownMistake("top-p applied before top-k",
                 "The order is temperature, then top-k, then top-p on what top-k left (the nucleus is measured "
                 "among the k tokens). You applied top-p first.", sample_top_p_before_top_k),
)


class GeneratorContextOneShort(_GeneratorMistake):
    """Wrong: crops to block_size - 1 tokens."""

    def forward(self, input_ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
        bs = self.model.config.block_size
        ids = input_ids
        with torch.no_grad():
            for _ in range(max_new_tokens):
                logits = self.model(ids[:, -(bs - 1):])[:, -1, :]
                nxt = G.sample_next_token(logits, temperature, top_k=top_k, top_p=top_p, generator=generator)
                ids = torch.cat([ids, nxt[:, None]], dim=1)
        return ids


class GeneratorOneTooFew(_GeneratorMistake):
    """Wrong: range(max_new_tokens - 1)."""

    def forward(self, input_ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
        return TextGenerator.forward(self, input_ids, max_new_tokens - 1, temperature, top_k, top_p, generator)


class GeneratorProbabilitiesSampled(_GeneratorMistake):
    """Wrong: hands softmax(logits) to the sampler, which takes logits."""

    def forward(self, input_ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
        bs = self.model.config.block_size
        ids = input_ids
        with torch.no_grad():
            for _ in range(max_new_tokens):
                probs = torch.softmax(self.model(ids[:, -bs:])[:, -1, :], dim=-1)
                nxt = G.sample_next_token(probs, temperature, top_k=top_k, top_p=top_p, generator=generator)
                ids = torch.cat([ids, nxt[:, None]], dim=1)
        return ids


class GeneratorNewGeneratorEachStep(_GeneratorMistake):
    """Wrong: a fresh torch.Generator().manual_seed(0) inside the loop."""

    def forward(self, input_ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
        bs = self.model.config.block_size
        ids = input_ids
        with torch.no_grad():
            for _ in range(max_new_tokens):
                logits = self.model(ids[:, -bs:])[:, -1, :]
                nxt = G.sample_next_token(logits, temperature, top_k=top_k, top_p=top_p,
                                          generator=torch.Generator().manual_seed(0))
                ids = torch.cat([ids, nxt[:, None]], dim=1)
        return ids


class GeneratorFloatIds(_GeneratorMistake):
    def forward(self, input_ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
        return TextGenerator.forward(self, input_ids, max_new_tokens, temperature, top_k, top_p, generator).float()


TEXT_GENERATOR.properties = tuple(TEXT_GENERATOR.properties) + (
    Property("same seed, same tokens",
             "run twice with generators of the same seed, your loop returned different tokens: it draws random "
             "numbers from somewhere other than `generator` (PyTorch's global random state, numpy or Python's random "
             "module). Pass the generator on to the sampler: "
             "sample_next_token(logits, temperature, top_k=top_k, top_p=top_p, generator=generator)",
             _same_seed_same_tokens, _call_again, fires_for=("ignores the generator",)),)
TEXT_GENERATOR.mistakes = tuple(TEXT_GENERATOR.mistakes) + (
    KnownMistake("context one token short",
                 "You crop the context to block_size - 1 tokens (an off-by-one in the slice). The model can read "
                 "block_size tokens: ids[:, -block_size:].", GeneratorContextOneShort),
    KnownMistake("one new token too few",
                 "Your output is one token short: the loop must run max_new_tokens times (range(max_new_tokens)), "
                 "giving shape (B, T + max_new_tokens).", GeneratorOneTooFew),
    KnownMistake("probabilities handed to the sampler",
                 "You apply softmax before calling the sampler, which expects LOGITS (it divides them by the "
                 "temperature and applies softmax itself). Pass model(context)[:, -1, :] as it is.",
                 GeneratorProbabilitiesSampled),
    KnownMistake("a new generator made inside the loop",
                 "You create a new generator with a fixed seed at every step, so every step draws the same random "
                 "number. Use the generator you are given (generator=generator), created once by the caller.",
                 GeneratorNewGeneratorEachStep),
    KnownMistake("token ids as floats",
                 "Your output is a float tensor. Token ids are int64 (torch.long): keep the prompt's dtype and "
                 "concatenate the sampled ids as they come.", GeneratorFloatIds),
)


def _cached(q_new, k_new, v_new, k_cache, v_cache):
    return torch.cat([k_cache, k_new], dim=-2), torch.cat([v_cache, v_new], dim=-2)


def cache_mask_offset_off_by_one(q_new, k_new, v_new, k_cache, v_cache):
    k_all, v_all = _cached(q_new, k_new, v_new, k_cache, v_cache)
    T_past, T_new = k_cache.shape[-2], q_new.shape[-2]
    mask = torch.ones(T_new, T_past + T_new, dtype=torch.bool).tril(T_past - 1)  # new token i cannot see itself
    return scaled_dot_product_attention(q_new, k_all, v_all, mask=mask), k_all, v_all


def cache_mask_inverted(q_new, k_new, v_new, k_cache, v_cache):
    k_all, v_all = _cached(q_new, k_new, v_new, k_cache, v_cache)
    mask = ~causal_mask(q_new.shape[-2], offset=k_cache.shape[-2])  # True where the future is
    return scaled_dot_product_attention(q_new, k_all, v_all, mask=mask), k_all, v_all


def cache_not_scaled(q_new, k_new, v_new, k_cache, v_cache):
    k_all, v_all = _cached(q_new, k_new, v_new, k_cache, v_cache)
    scores = q_new @ k_all.transpose(-2, -1)
    scores = scores.masked_fill(~causal_mask(q_new.shape[-2], offset=k_cache.shape[-2]), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v_all, k_all, v_all


def cache_last_query_only(q_new, k_new, v_new, k_cache, v_cache):
    k_all, v_all = _cached(q_new, k_new, v_new, k_cache, v_cache)
    return scaled_dot_product_attention(q_new[..., -1:, :], k_all, v_all), k_all, v_all


def cache_values_from_key_cache(q_new, k_new, v_new, k_cache, v_cache):
    k_all = torch.cat([k_cache, k_new], dim=-2)
    v_all = torch.cat([k_cache, v_new], dim=-2)  # k_cache where v_cache belongs
    mask = causal_mask(q_new.shape[-2], offset=k_cache.shape[-2])
    return scaled_dot_product_attention(q_new, k_all, v_all, mask=mask), k_all, v_all


def cache_softmax_over_queries(q_new, k_new, v_new, k_cache, v_cache):
    k_all, v_all = _cached(q_new, k_new, v_new, k_cache, v_cache)
    scores = q_new @ k_all.transpose(-2, -1) / q_new.shape[-1] ** 0.5
    scores = scores.masked_fill(~causal_mask(q_new.shape[-2], offset=k_cache.shape[-2]), float("-inf"))
    return torch.softmax(scores, dim=-2).nan_to_num(0.0) @ v_all, k_all, v_all


ATTEND_WITH_CACHE.mistakes = tuple(ATTEND_WITH_CACHE.mistakes) + (
    KnownMistake("causal mask offset off by one",
                 "Your new tokens cannot see themselves: new token i sits at position T_past + i and may attend to "
                 "keys 0 .. T_past + i INCLUDED. causal_mask(T_new, offset=T_past), or tril(diagonal=T_past).",
                 cache_mask_offset_off_by_one),
    KnownMistake("mask inverted",
                 "Your mask blocks the past and keeps the future. In course_lib a mask is True where a query MAY "
                 "attend: causal_mask(T_new, offset=T_past) as it is, not its negation.", cache_mask_inverted),
    KnownMistake("scores not divided by sqrt(Dh)",
                 "Divide the scores q k^T by sqrt(Dh), the size of one head (q_new.shape[-1] ** 0.5), before the "
                 "softmax, or use scaled_dot_product_attention.", cache_not_scaled),
    KnownMistake("only the last new token's output",
                 "With several new tokens (the prompt step) return one output per new token, shape "
                 "(B, H, T_new, Dh), not only the last one.", cache_last_query_only),
    KnownMistake("values built from the key cache",
                 "v_all must be torch.cat([v_cache, v_new], dim=-2); yours starts with k_cache (a copy-paste slip).",
                 cache_values_from_key_cache),
    KnownMistake("softmax over the queries",
                 "The softmax runs over the KEYS (the last axis, dim=-1): each new token's weights over the cached "
                 "and new keys sum to 1.", cache_softmax_over_queries),
)


# ---------------------------------------------------------------------------------------------------
# Forgetting the generator (issue 11, 3.): during a graded call PyTorch's global random state is seeded
# from the call (course_lib.exercises.rng), the same inline and in the grader, so drawing from it gives
# known tokens, and the mistake can be named.
# ---------------------------------------------------------------------------------------------------


def sample_ignores_generator(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    return sample_next_token(logits, temperature, top_k, top_p, None)  # multinomial from the global state


def sample_seeded_inside(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    # torch.Generator().manual_seed(0), torch.manual_seed(0) + global draws and generator.manual_seed(0) all
    # draw the same numbers: the stream of seed 0
    return sample_next_token(logits, temperature, top_k, top_p, torch.Generator().manual_seed(0))


class GeneratorIgnoresGenerator(_GeneratorMistake):
    """Wrong: the sampler is called without the generator (every step draws from the global state)."""

    def forward(self, input_ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
        return TextGenerator.forward(self, input_ids, max_new_tokens, temperature, top_k, top_p, None)


class GeneratorSeededInside(_GeneratorMistake):
    """Wrong: one generator seeded with 0 made in forward (or torch.manual_seed(0) and global draws)."""

    def forward(self, input_ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
        return TextGenerator.forward(self, input_ids, max_new_tokens, temperature, top_k, top_p,
                                     torch.Generator().manual_seed(0))


SAMPLE.mistakes = tuple(SAMPLE.mistakes) + (
    KnownMistake("ignores the generator",
                 "Your draw does not use `generator`: torch.multinomial(probs, 1) without `generator=generator` "
                 "draws from PyTorch's global random state, so your tokens are not the ones everybody else (and "
                 "the check) gets, and the same seed does not give the same tokens twice. Pass "
                 "`generator=generator` to every random call: torch.multinomial(probs, 1, generator=generator) "
                 "(torch.distributions.Categorical(...).sample() cannot take a generator: use torch.multinomial).",
                 sample_ignores_generator),
    KnownMistake("seeded with 0 inside the function",
                 "Your tokens come from a random stream seeded with 0 inside your function (torch.manual_seed(0), a "
                 "new torch.Generator().manual_seed(0), or generator.manual_seed(0)), so every call draws the same "
                 "numbers whatever generator it is given. The caller seeds the generator: use it as it is, "
                 "torch.multinomial(probs, 1, generator=generator).",
                 sample_seeded_inside),
)
TEXT_GENERATOR.mistakes = tuple(TEXT_GENERATOR.mistakes) + (
    KnownMistake("ignores the generator",
                 "Your loop samples without the generator it is given, so every step draws from PyTorch's global "
                 "random state: your tokens are not the ones everybody else (and the check) gets, and the same "
                 "seed does not give the same text twice. Pass `generator=generator` on at every step: "
                 "sample_next_token(logits, temperature, top_k=top_k, top_p=top_p, generator=generator).",
                 GeneratorIgnoresGenerator),
    KnownMistake("seeded with 0 inside forward",
                 "Your tokens come from a random stream seeded with 0 inside forward (torch.manual_seed(0), or one "
                 "new torch.Generator().manual_seed(0)), so every call generates the same way whatever generator it "
                 "is given. The caller seeds the generator: use it as it is, and pass it on at every step: "
                 "sample_next_token(logits, temperature, top_k=top_k, top_p=top_p, generator=generator).",
                 GeneratorSeededInside),
)

register(LM_TARGETS, SAMPLE, TEXT_GENERATOR, ATTEND_WITH_CACHE)
