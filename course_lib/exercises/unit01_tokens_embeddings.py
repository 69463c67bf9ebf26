"""Exercises of unit 01: tokens & embeddings.

Five small functions that take a learner from token ids to word analogies:

* ``01.one_hot``            ids (...) -> one-hot vectors (..., V)
* ``01.embed``              ids (...) and W_E (V, D) -> embeddings (..., D)  (== one_hot(ids) @ W_E)
* ``01.cosine_similarity``  a (..., D), b (..., D) -> (...)
* ``01.nearest_neighbours`` the k rows of W_E most similar to a query vector
* ``01.analogy``            a : b :: c : ?   by the nearest neighbours of  u_b - u_a + u_c
                            (u = the rows of W_E scaled to length 1)

Each lists the mistakes learners really make as runnable buggy variants, so the check can name them
("your similarities match plain dot products: divide by both vectors' lengths").
"""

from __future__ import annotations

import torch

from .. import embeddings as EMB
from .core import Alternative, Case, Exercise, Forbidden, KnownMistake, Property
from .registry import register
from .core import randn as _randn  # shared case helpers

NOTEBOOK = "01_tokens_embeddings"

ONE_HOT_BUILTINS = Forbidden(
    "a built-in one-hot (F.one_hot)",
    ("torch.nn.functional.one_hot",),
    "this exercise asks you to build the one-hot vectors yourself (torch.zeros and an index)",
)
EMBEDDING_BUILTINS = Forbidden(
    "a built-in embedding (F.embedding, nn.Embedding)",
    ("torch.nn.functional.embedding", "torch.nn.Embedding", "torch.embedding"),
    "this exercise asks you to look the rows up yourself: an embedding is just row selection",
)
COSINE_BUILTINS = Forbidden(
    "a built-in cosine similarity (F.cosine_similarity, F.normalize)",
    ("torch.nn.functional.cosine_similarity", "torch.cosine_similarity", "torch.nn.CosineSimilarity",
     "torch.nn.functional.normalize"),
    "this exercise asks you to compute the cosine from a dot product and two lengths",
)


def _randint(gen, high, *shape):
    return torch.randint(0, high, shape, generator=gen)


# The references are course_lib.embeddings's own functions (so that calling them from an exercise is
# reported as a shortcut). Their learner-facing signatures:
#   one_hot(ids, vocab_size)            embed(ids, W_E)            cosine_similarity(a, b)
#   nearest_neighbours(query, W_E, k, exclude=())
#   analogy(a, b, c, W_E, k=1)          (course_lib's also accepts words with tokenizer=...)
one_hot = EMB.one_hot
embed = EMB.embed
cosine_similarity = EMB.cosine_similarity
nearest_neighbours = EMB.nearest_neighbours


def _unit_rows(W_E):
    return W_E / W_E.norm(dim=-1, keepdim=True)  # (V, D), every row of length 1


# ---------------------------------------------------------------------------------------------------
# 01.one_hot
# ---------------------------------------------------------------------------------------------------


def one_hot_one_based(ids, vocab_size):
    return one_hot((ids - 1) % vocab_size, vocab_size)


def one_hot_integer(ids, vocab_size):
    return one_hot(ids, vocab_size).long()


def one_hot_size_from_ids(ids, vocab_size):
    return one_hot(ids, int(ids.max()) + 1)


def one_hot_vocab_first(ids, vocab_size):
    return one_hot(ids, vocab_size).movedim(-1, 0)


def one_hot_bool(ids, vocab_size):
    return ids.unsqueeze(-1) == torch.arange(vocab_size)  # (..., V) bool


def one_hot_float64(ids, vocab_size):
    return one_hot(ids, vocab_size).double()


def one_hot_batch_flattened(ids, vocab_size):
    return one_hot(ids.reshape(-1), vocab_size)  # (N, V) for any input shape


def one_hot_every_id_set(ids, vocab_size):
    out = torch.zeros(*ids.shape, vocab_size)
    out[..., ids.reshape(-1)] = 1.0  # every id of the input, in every vector
    return out


def one_hot_one_column_too_many(ids, vocab_size):
    return (ids.unsqueeze(-1) == torch.arange(vocab_size + 1)).float()  # (..., V + 1)


def one_hot_inverted(ids, vocab_size):
    return (ids.unsqueeze(-1) != torch.arange(vocab_size)).float()  # 0 at the id, 1 elsewhere


def one_hot_int32(ids, vocab_size):
    return (ids.unsqueeze(-1) == torch.arange(vocab_size)).int()


def one_hot_one_column_too_few(ids, vocab_size):
    return (ids.unsqueeze(-1) == torch.arange(vocab_size - 1)).float()  # (..., V - 1)

def one_hot_eye_rows(ids, vocab_size):
    return torch.eye(vocab_size)[ids]  # row i of the identity is e_i


def one_hot_scatter(ids, vocab_size):
    return torch.zeros(*ids.shape, vocab_size).scatter_(-1, ids.unsqueeze(-1), 1.0)


def _one_hot_cases(gen, hidden):
    # the last id (V - 1) occurs here: a one-hot that drops or clamps it fails this case
    cases = [Case((torch.tensor([2, 0, 4, 1, 0]), 5), {}, "basic", "ids [2, 0, 4, 1, 0], vocabulary of 5")]
    n = 3 if hidden else 1
    for _ in range(n):
        V = int(torch.randint(8, 30, (1,), generator=gen))
        ids = _randint(gen, V - 2, 7)  # never the last ids: the vocabulary is larger than what is seen
        cases.append(Case((ids, V), {}, "basic", f"7 ids, vocabulary of {V}"))
    cases.append(Case((_randint(gen, 10, 3, 4), 12), {}, "batched", "a (3, 4) batch of ids, vocabulary of 12"))
    if hidden:
        cases.append(Case((_randint(gen, 50, 2, 3, 5), 64), {}, "batched", "a (2, 3, 5) batch, vocabulary of 64"))
    # axes of size 1 stay: a .squeeze() would drop them (drawn last, so the cases above are unchanged)
    cases.append(Case((_randint(gen, 6, 1, 1), 6), {}, "batched", "a (1, 1) batch: the axes of size 1 stay"))
    return cases


def _rows_are_one_hot(case, out, derived) -> bool:
    return bool(torch.all(out.sum(-1) == 1) and torch.all((out == 0) | (out == 1)))


ONE_HOT = Exercise(
    id="01.one_hot", notebook=NOTEBOOK, function="one_hot", points=2,
    title="One-hot vectors", minutes=5,
    reference=one_hot, make_cases=_one_hot_cases, forbidden=[ONE_HOT_BUILTINS],
    alternatives=[Alternative("rows of torch.eye", one_hot_eye_rows), Alternative("scatter_", one_hot_scatter)],
    properties=[Property("exactly one 1 per vector", "each one-hot vector has a single 1.0 and zeros elsewhere",
                         _rows_are_one_hot, fires_for=("a 1 at every id of the input", "one column too few",
                                                       "vocabulary axis first", "zeros and ones swapped"))],
    mistakes=[
        KnownMistake("off by one (1-based ids)",
                     "Your 1s sit one position too early: token ids start at 0, so id i sets position i "
                     "(out[..., i] = 1), not position i - 1.",
                     one_hot_one_based),
        KnownMistake("integer one-hot instead of float",
                     "Your one-hot vectors are integers. They will be multiplied with a float matrix "
                     "(one_hot @ W_E), so make them float32: torch.zeros(..., dtype=torch.float32).",
                     one_hot_integer),
        KnownMistake("vocabulary size taken from the ids",
                     "Your vectors have length max(ids) + 1. Their length is the whole vocabulary, vocab_size, "
                     "even when the largest ids do not occur in this input.",
                     one_hot_size_from_ids),
        KnownMistake("vocabulary axis first",
                     "Your output has the vocabulary axis first, shape (V, ...). Put it LAST, shape (..., V), so "
                     "that one_hot(ids) @ W_E works for any batch shape.",
                     one_hot_vocab_first),
        KnownMistake("boolean one-hot instead of float",
                     "Your one-hot vectors are booleans (the result of ==). Convert them: (...).float(), so that "
                     "one_hot(ids) @ W_E works.",
                     one_hot_bool),
        KnownMistake("float64 instead of float32",
                     "Your vectors are float64 (numpy's default, or dtype=torch.double). PyTorch's weights are "
                     "float32: build them with torch.zeros(...) (float32 by default) or convert with .float().",
                     one_hot_float64),
        KnownMistake("batch flattened",
                     "Your output has shape (N, V) with N the number of ids: the batch shape of `ids` is lost. "
                     "Keep it: the output shape is ids.shape + (vocab_size,).",
                     one_hot_batch_flattened),
        KnownMistake("a 1 at every id of the input",
                     "Each of your vectors has a 1 at EVERY id that occurs in the input: out[..., ids] = 1 indexes "
                     "the last axis with all ids at once. Compare each id with torch.arange(vocab_size) instead "
                     "(ids.unsqueeze(-1) == torch.arange(V)), or scatter_ along the last axis.",
                     one_hot_every_id_set),
        KnownMistake("one column too many",
                     "Your vectors have vocab_size + 1 entries (torch.arange(vocab_size + 1), or zeros(..., V + 1)). "
                     "Ids run from 0 to vocab_size - 1, so vocab_size positions are enough: "
                     "torch.arange(vocab_size) gives exactly them.",
                     one_hot_one_column_too_many),
        KnownMistake("zeros and ones swapped",
                     "Your vectors are 0 at the id and 1 everywhere else (!= instead of ==, or 1 - one_hot). A "
                     "one-hot vector is 1 at the token's own position and 0 elsewhere: ids.unsqueeze(-1) == "
                     "torch.arange(vocab_size).",
                     one_hot_inverted),
        KnownMistake("int32 one-hot instead of float",
                     "Your one-hot vectors are int32 (.int()). They will be multiplied with a float matrix "
                     "(one_hot @ W_E): make them float32 with .float().",
                     one_hot_int32),
        KnownMistake("one column too few",
                     "Your vectors have vocab_size - 1 entries, so the last id, vocab_size - 1, has no position. "
                     "Ids run from 0 to vocab_size - 1: torch.arange(vocab_size) gives all vocab_size positions.",
                     one_hot_one_column_too_few),
    ],
)


# ---------------------------------------------------------------------------------------------------
# 01.embed
# ---------------------------------------------------------------------------------------------------


def embed_off_by_one(ids, W_E):
    return W_E[(ids - 1) % W_E.shape[0]]


def embed_columns(ids, W_E):
    return W_E[:, ids]


def embed_transposed_matrix(ids, W_E):
    return one_hot(ids, W_E.shape[1]) @ W_E.T


def embed_batch_flattened(ids, W_E):
    return W_E[ids.reshape(-1)]  # (N, D) for any shape of ids


def embed_rows_normalised(ids, W_E):
    rows = W_E[ids]
    return rows / rows.norm(dim=-1, keepdim=True)


def embed_via_one_hot(ids, W_E):
    return torch.nn.functional.one_hot(ids, W_E.shape[0]).float() @ W_E  # (..., V) @ (V, D)


def embed_loop(ids, W_E):
    rows = [W_E[i] for i in ids.reshape(-1).tolist()]  # one row per id
    return torch.stack(rows).reshape(*ids.shape, W_E.shape[1])


def _embed_cases(gen, hidden):
    cases = []
    sizes = [(6, 4, (5,)), (8, 5, (2, 3))] + ([(20, 8, (9,)), (50, 16, (4, 7))] if hidden else [])
    for V, D, shape in sizes:
        cases.append(Case((_randint(gen, V, *shape), _randn(gen, V, D)), {}, "basic",
                          f"ids {shape}, W_E ({V}, {D})"))
    # the last rows of W_E unused: a one-hot sized by the largest id (F.one_hot(ids) without V) no longer fits
    V, D = 9, 4
    cases.append(Case((_randint(gen, V - 3, 6), _randn(gen, V, D)), {}, "basic",
                      f"6 ids, W_E ({V}, {D}), the last 3 rows unused"))
    cases.append(Case((_randint(gen, 10, 3, 5), _randn(gen, 10, 10)), {}, "batched",
                      "a (3, 5) batch, square W_E (10, 10)"))
    if hidden:
        cases.append(Case((_randint(gen, 12, 2, 3, 4), _randn(gen, 12, 12)), {}, "batched",
                          "a (2, 3, 4) batch, square W_E (12, 12)"))
    # a batch of one sentence: the axis of size 1 stays (a .squeeze() drops it)
    cases.append(Case((_randint(gen, 7, 1, 3), _randn(gen, 7, 4)), {}, "batched",
                      "a (1, 3) batch of ids: the result is (1, 3, 4)"))
    return cases


def embed_averaged(ids, W_E):
    return W_E[ids].mean(dim=-2)


def embed_output_transposed(ids, W_E):
    rows = W_E[ids]
    return rows.permute(*reversed(range(rows.dim())))  # what rows.T does: (D, N) for a 1-D ids


def embed_ids_ignored(ids, W_E):
    return W_E[torch.arange(ids.numel())].reshape(*ids.shape, W_E.shape[1])  # the first N rows


def embed_one_row_too_far(ids, W_E):
    return W_E[(ids + 1).clamp(max=W_E.shape[0] - 1)]

def embed_float64(ids, W_E):
    return embed(ids, W_E).double()


def embed_scaled_by_sqrt_d(ids, W_E):
    return embed(ids, W_E) * W_E.shape[-1] ** 0.5


def embed_divided_by_sqrt_d(ids, W_E):
    return embed(ids, W_E) / W_E.shape[-1] ** 0.5


def embed_summed(ids, W_E):
    return W_E[ids].sum(dim=-2)  # a bag of words: one vector per sequence


EMBED = Exercise(
    id="01.embed", notebook=NOTEBOOK, function="embed", points=2,
    title="Embedding lookup", minutes=5,
    reference=embed, make_cases=_embed_cases, forbidden=[EMBEDDING_BUILTINS],
    alternatives=[Alternative("one-hot times W_E", embed_via_one_hot), Alternative("a loop over the ids", embed_loop)],
    mistakes=[
        KnownMistake("off by one",
                     "You return the row before the right one. Token id i selects row i of W_E (ids start at 0).",
                     embed_off_by_one),
        KnownMistake("columns instead of rows",
                     "You select columns of W_E (W_E[:, ids]). W_E has one ROW per token (shape (V, D)): W_E[ids] "
                     "gives shape (..., D).",
                     embed_columns),
        KnownMistake("transposed embedding matrix",
                     "You multiply with W_E^T. The lookup is one_hot(ids, V) @ W_E with W_E of shape (V, D): row i "
                     "of W_E is token i's vector.",
                     embed_transposed_matrix),
        KnownMistake("batch flattened",
                     "Your output has shape (N, D): the batch shape of `ids` is lost. W_E[ids] keeps it, giving "
                     "ids.shape + (D,).",
                     embed_batch_flattened),
        KnownMistake("rows normalised",
                     "You scale each row to length 1. An embedding is the row itself, unchanged: W_E[ids] (the "
                     "unit rows belong to the analogy exercise).",
                     embed_rows_normalised),
        KnownMistake("float64 instead of float32",
                     "Your output is float64 (double). A lookup copies rows of W_E, so it keeps their dtype."
                     " "
                     "The expected result is float32, like the inputs: do not call .double() or build tensors with "
                     "dtype=torch.float64 / from numpy (numpy's default is float64); if you converted on purpose, "
                     "convert back with .float().",
                     embed_float64),
        KnownMistake("rows multiplied by sqrt(D)",
                     "Your rows are sqrt(D) times too long. Some models scale the embeddings by sqrt(d_model) "
                     "(the original Transformer does), but that happens in the model, not in the lookup: "
                     "embed returns the rows of W_E exactly, W_E[ids].",
                     embed_scaled_by_sqrt_d),
        KnownMistake("rows divided by sqrt(D)",
                     "Your rows are sqrt(D) times too short: you divide by sqrt(D) (attention divides its scores by "
                     "sqrt(d_k), the embedding does not). embed returns the rows of W_E exactly: W_E[ids].",
                     embed_divided_by_sqrt_d),
        KnownMistake("rows summed over the ids",
                     "You add up the rows of all ids (a 'bag of words', one vector per sequence). The lookup keeps "
                     "one vector PER id: W_E[ids] has shape ids.shape + (D,), nothing is summed.",
                     embed_summed),
        KnownMistake("rows averaged over the ids",
                     "You average the rows of all ids (one vector per sequence). The lookup keeps one vector PER id: "
                     "W_E[ids] has shape ids.shape + (D,), nothing is averaged.",
                     embed_averaged),
        KnownMistake("output transposed",
                     "Your output is transposed, (D, N) instead of (N, D). W_E[ids] already has one row per id: "
                     "return it as it is.",
                     embed_output_transposed),
        KnownMistake("ids ignored (the first rows)",
                     "You return the first N rows of W_E whatever the ids are. Index W_E with the ids themselves: "
                     "W_E[ids].",
                     embed_ids_ignored),
        KnownMistake("off by one (id + 1)",
                     "You return the row after the right one. Token id i selects row i of W_E: ids start at 0, so "
                     "no + 1 is needed.",
                     embed_one_row_too_far),
    ],
)


# ---------------------------------------------------------------------------------------------------
# 01.cosine_similarity
# ---------------------------------------------------------------------------------------------------


def cosine_plain_dot(a, b):
    return (a * b).sum(-1)


def cosine_one_norm(a, b):
    return (a * b).sum(-1) / a.norm(dim=-1)


def cosine_squared_norms(a, b):
    return (a * b).sum(-1) / ((a * a).sum(-1) * (b * b).sum(-1))


def cosine_wrong_axis(a, b):
    return (a * b).sum(0) / (a.norm(dim=0) * b.norm(dim=0))


def cosine_whole_tensor_norms(a, b):
    return (a * b).sum(-1) / (a.norm() * b.norm())  # one length for the whole tensor


def cosine_mean_not_sum(a, b):
    return (a * b).mean(-1) / (a.norm(dim=-1) * b.norm(dim=-1))


def cosine_distance(a, b):
    return 1 - cosine_similarity(a, b)


def cosine_keepdim_lengths(a, b):
    return (a * b).sum(-1) / (a.norm(dim=-1, keepdim=True) * b.norm(dim=-1, keepdim=True))


def cosine_lengths_clamped(a, b):
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp(min=1.0)  # "no division by 0"


def cosine_unit_vectors_first(a, b):
    ua = a / a.norm(dim=-1, keepdim=True)
    ub = b / b.norm(dim=-1, keepdim=True)
    return (ua * ub).sum(dim=-1)


def cosine_einsum(a, b):
    return torch.einsum("...d,...d->...", a, b) / torch.sqrt((a ** 2).sum(-1) * (b ** 2).sum(-1))


def _cosine_cases(gen, hidden):
    cases = [Case((torch.tensor([1.0, 2.0, 2.0]), torch.tensor([2.0, 0.0, 1.0])), {}, "vectors",
                  "two vectors of length 3")]
    for D in [5] + ([16, 50] if hidden else []):
        cases.append(Case((_randn(gen, D, scale=3.0), _randn(gen, D, scale=0.5)), {}, "vectors",
                          f"two vectors of length {D} with different lengths"))
    for N, D in [(4, 6)] + ([(10, 3), (7, 32)] if hidden else []):
        cases.append(Case((_randn(gen, N, D, scale=2.0), _randn(gen, N, D)), {}, "batched",
                          f"({N}, {D}): one similarity per row"))
    cases.append(Case((_randn(gen, 2, 3, 8), _randn(gen, 2, 3, 8, scale=4.0)), {}, "batched",
                      "(2, 3, 8): any leading dimensions"))
    for N, D in [(3, 4)] + ([(6, 10)] if hidden else []):
        cases.append(Case((_randn(gen, N, D, scale=0.1), _randn(gen, N, D, scale=0.2)), {}, "batched",
                          f"({N}, {D}): short vectors (lengths well below 1)"))
    cases.append(Case((_randn(gen, 1, 5), _randn(gen, 1, 5)), {}, "batched",
                      "(1, 5): one row, so the result has shape (1,) (a .squeeze() would drop it)"))
    return cases


def _in_minus_one_one(case, out, derived) -> bool:
    return bool(((out >= -1 - 1e-5) & (out <= 1 + 1e-5)).all())


def _scale_invariant(case, out, derived) -> bool:
    return bool(torch.allclose(derived[0], out, atol=1e-5, rtol=1e-4))


def _scaled_inputs(case):
    a, b = case.args
    return [Case((a * 7.0, b * 0.25), {}, case.group, "a scaled by 7, b by 0.25")]


def cosine_lengths_added(a, b):
    return (a * b).sum(-1) / (a.norm(dim=-1) + b.norm(dim=-1))


def cosine_b_length_of_whole_tensor(a, b):
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm())  # b.norm() without dim


def cosine_a_length_of_whole_tensor(a, b):
    return (a * b).sum(-1) / (a.norm() * b.norm(dim=-1))  # a.norm() without dim


def cosine_dim_one(a, b):
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1))  # dim=1 hard-coded


def cosine_l1_lengths(a, b):
    return (a * b).sum(-1) / (a.abs().sum(-1) * b.abs().sum(-1))


def cosine_squared(a, b):
    return (a * b).sum(-1) ** 2 / ((a * a).sum(-1) * (b * b).sum(-1))


def cosine_sqrt_of_lengths(a, b):
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).sqrt()


def cosine_clamped_at_zero(a, b):
    return cosine_similarity(a, b).clamp(0, 1)


def cosine_projection(a, b):
    return (a * b).sum(-1) / a.norm(dim=-1) ** 2


def cosine_euclidean_distance(a, b):
    return ((a - b) ** 2).sum(-1).sqrt()


def cosine_dot_of_whole_tensor(a, b):
    return (a * b).sum() / (a.norm(dim=-1) * b.norm(dim=-1))  # one dot product for all rows

def cosine_float64(a, b):
    return cosine_similarity(a.double(), b.double())


def cosine_absolute_value(a, b):
    return cosine_similarity(a, b).abs()


COSINE = Exercise(
    id="01.cosine_similarity", notebook=NOTEBOOK, function="cosine_similarity", points=2,
    title="Cosine similarity", minutes=10,
    reference=cosine_similarity, make_cases=_cosine_cases, atol=1e-5, rtol=1e-4,
    forbidden=[COSINE_BUILTINS],
    alternatives=[Alternative("unit vectors first", cosine_unit_vectors_first),
                  Alternative("einsum and sqrt", cosine_einsum)],
    properties=[
        Property("between -1 and 1", "a cosine lies between -1 (opposite) and 1 (same direction)",
                 _in_minus_one_one,
                 fires_for=("Euclidean distance instead of cosine", "cosine distance (1 - cos)",
                            "divided by squared lengths", "divided by |a|^2 (a projection)",
                            "dot product over the whole tensor", "keepdim=True on the lengths",
                            "lengths added instead of multiplied", "only one vector normalised",
                            "square root of the lengths", "unnormalised (plain dot product)")),
        Property("ignores the lengths", "scaling a or b by a positive number must not change their cosine",
                 _scale_invariant, _scaled_inputs,
                 fires_for=("Euclidean distance instead of cosine", "divided by squared lengths",
                            "divided by |a|^2 (a projection)", "lengths added instead of multiplied",
                            "lengths clamped", "only one vector normalised", "square root of the lengths",
                            "unnormalised (plain dot product)")),
    ],
    mistakes=[
        KnownMistake("unnormalised (plain dot product)",
                     "Your similarities are plain dot products a . b, which grow with the vectors' lengths. "
                     "Divide by both lengths: a . b / (|a| |b|).",
                     cosine_plain_dot),
        KnownMistake("only one vector normalised",
                     "You divide by the length of a only. The cosine divides by both lengths, |a| |b|.",
                     cosine_one_norm),
        KnownMistake("divided by squared lengths",
                     "You divide by |a|^2 |b|^2 (sums of squares). The length is the square root of the sum of "
                     "squares: use a.norm(dim=-1) or torch.sqrt((a * a).sum(-1)).",
                     cosine_squared_norms),
        KnownMistake("similarity over the wrong axis",
                     "You sum over the first axis. The vectors' entries lie along the LAST axis: use dim=-1 for "
                     "the dot product and both norms.",
                     cosine_wrong_axis),
        KnownMistake("lengths of the whole tensor",
                     "You divide by a.norm() * b.norm() without dim: the length of the WHOLE tensor, so each row's "
                     "cosine shrinks with the number of rows. Use a.norm(dim=-1) and b.norm(dim=-1).",
                     cosine_whole_tensor_norms),
        KnownMistake("mean instead of sum",
                     "Your dot product is a MEAN over the entries (divided by D). The dot product is the sum: "
                     "(a * b).sum(dim=-1).",
                     cosine_mean_not_sum),
        KnownMistake("lengths clamped",
                     "You clamp the product of the lengths at 1 (clamp(min=1)), which changes every cosine of "
                     "short vectors. To guard against zero vectors, add a tiny eps (1e-12), or clamp at a tiny "
                     "number, not at 1.",
                     cosine_lengths_clamped),
        KnownMistake("cosine distance (1 - cos)",
                     "You return 1 - cos(a, b), the cosine DISTANCE (what scipy's `cosine` computes). The "
                     "similarity is the cosine itself: 1 for the same direction.",
                     cosine_distance),
        KnownMistake("keepdim=True on the lengths",
                     "Your lengths keep their axis (keepdim=True), shape (..., 1), and broadcast against the dot "
                     "products of shape (...): the output gets an extra axis. Drop keepdim here (it is only needed "
                     "when you divide the vectors themselves).",
                     cosine_keepdim_lengths),
        KnownMistake("float64 instead of float32",
                     "Your output is float64 (double). "
                     "The expected result is float32, like the inputs: do not call .double() or build tensors with "
                     "dtype=torch.float64 / from numpy (numpy's default is float64); if you converted on purpose, "
                     "convert back with .float().",
                     cosine_float64),
        KnownMistake("absolute value of the cosine",
                     "Your similarities are never negative: you took the absolute value (abs, or a square and a "
                     "square root). A cosine is negative when the vectors point in opposite directions (-1 for "
                     "exactly opposite); keep its sign: dot / (|a| |b|).",
                     cosine_absolute_value),
        KnownMistake("lengths added instead of multiplied",
                     "You divide by |a| + |b|. The cosine divides by the PRODUCT of the lengths: "
                     "a . b / (|a| * |b|).",
                     cosine_lengths_added),
        KnownMistake("b's length over the whole tensor",
                     "You divide by b.norm() without dim=-1: the length of the WHOLE tensor b, one number for all "
                     "rows. Each row needs its own length: b.norm(dim=-1) (and a.norm(dim=-1)).",
                     cosine_b_length_of_whole_tensor),
        KnownMistake("a's length over the whole tensor",
                     "You divide by a.norm() without dim=-1: the length of the WHOLE tensor a, one number for all "
                     "rows. Each row needs its own length: a.norm(dim=-1) (and b.norm(dim=-1)).",
                     cosine_a_length_of_whole_tensor),
        KnownMistake("dim=1 instead of dim=-1",
                     "You sum over dim=1. That is the last axis only for 2-D inputs: a single vector has no dim 1 "
                     "and a (2, 3, 8) batch has its vectors along dim 2. Use dim=-1, the last axis, whatever the "
                     "number of dimensions.",
                     cosine_dim_one),
        KnownMistake("sums of absolute values instead of lengths",
                     "You divide by the sums of absolute values (the L1 norm). The length of a vector is the square "
                     "root of the sum of SQUARES: a.norm(dim=-1) or torch.sqrt((a * a).sum(-1)).",
                     cosine_l1_lengths),
        KnownMistake("cosine squared",
                     "Your similarities are the squares of the cosines (never negative, and too small): you divide "
                     "(a . b)^2 by the squared lengths, or forgot a square root. cos = a . b / (|a| |b|), with "
                     "|a| = sqrt(sum of squares).",
                     cosine_squared),
        KnownMistake("square root of the lengths",
                     "You divide by sqrt(|a| |b|). The lengths are already square roots (of sums of squares): divide "
                     "by their product itself, a.norm(dim=-1) * b.norm(dim=-1).",
                     cosine_sqrt_of_lengths),
        KnownMistake("negative cosines clamped to 0",
                     "Your similarities are never below 0: you clamp them. A cosine runs from -1 (opposite "
                     "directions) to 1; keep the negative values.",
                     cosine_clamped_at_zero),
        KnownMistake("divided by |a|^2 (a projection)",
                     "You divide the dot product by |a|^2: that is the length of b's projection onto a, in units of "
                     "|a|. The cosine divides by |a| |b|.",
                     cosine_projection),
        KnownMistake("Euclidean distance instead of cosine",
                     "You return the distance |a - b|. The cosine similarity compares directions: "
                     "a . b / (|a| |b|), 1 for the same direction.",
                     cosine_euclidean_distance),
        KnownMistake("dot product over the whole tensor",
                     "Your dot product sums over ALL entries ((a * b).sum() without dim), one number for every row. "
                     "Each pair of vectors has its own dot product: (a * b).sum(dim=-1).",
                     cosine_dot_of_whole_tensor),
    ],
)


# ---------------------------------------------------------------------------------------------------
# 01.nearest_neighbours
# ---------------------------------------------------------------------------------------------------


def nn_includes_excluded(query, W_E, k, exclude=()):
    return nearest_neighbours(query, W_E, k)


def nn_by_dot_product(query, W_E, k, exclude=()):
    sims = W_E @ query  # (V,)
    if len(exclude):
        sims[list(exclude)] = float("-inf")
    idx = sims.topk(k).indices
    return idx, cosine_similarity(W_E[idx], query)


def nn_dot_product_values(query, W_E, k, exclude=()):
    sims = W_E @ query  # (V,)
    if len(exclude):
        sims[list(exclude)] = float("-inf")
    top = sims.topk(k)
    return top.indices, top.values


def nn_least_similar(query, W_E, k, exclude=()):
    sims = cosine_similarity(W_E, query)
    if len(exclude):
        sims[list(exclude)] = float("inf")
    top = sims.topk(k, largest=False)
    return top.indices, top.values


def nn_ascending_order(query, W_E, k, exclude=()):
    ids, sims = nearest_neighbours(query, W_E, k, exclude)
    return ids.flip(0), sims.flip(0)  # the right k words, least similar first


def nn_excluded_set_to_zero(query, W_E, k, exclude=()):
    sims = cosine_similarity(W_E, query)  # (V,)
    sims[list(exclude)] = 0.0  # still beats every negative cosine
    top = sims.topk(k)
    return top.indices, top.values


def nn_ids_sims_swapped(query, W_E, k, exclude=()):
    ids, sims = nearest_neighbours(query, W_E, k, exclude)
    return sims, ids


def nn_filtered_ids_not_mapped_back(query, W_E, k, exclude=()):
    keep = [i for i in range(W_E.shape[0]) if i not in set(exclude)]
    top = cosine_similarity(W_E[keep], query).topk(k)
    return top.indices, top.values  # positions in W_E[keep], not ids of W_E


def nn_query_length_kept(query, W_E, k, exclude=()):
    sims = (W_E @ query) / W_E.norm(dim=-1)  # divided by the rows' lengths only
    if len(exclude):
        sims[list(exclude)] = float("-inf")
    top = sims.topk(k)
    return top.indices, top.values


def nn_drop_the_top_one(query, W_E, k, exclude=()):
    top = cosine_similarity(W_E, query).topk(k + 1)  # "the first one is the query itself"
    return top.indices[1:], top.values[1:]


def nn_drop_first_len_exclude(query, W_E, k, exclude=()):
    top = cosine_similarity(W_E, query).topk(k + len(exclude))  # "the excluded ones come first"
    return top.indices[len(exclude):], top.values[len(exclude):]


def nn_k_before_excluding(query, W_E, k, exclude=()):
    sims = cosine_similarity(W_E, query)
    first_k = sims.argsort(descending=True)[:k].tolist()  # the top k, THEN the excluded ones removed
    ids = torch.tensor([i for i in first_k if i not in set(exclude)], dtype=torch.long)
    return ids, sims[ids]


def nn_tuple_index(query, W_E, k, exclude=()):
    sims = cosine_similarity(W_E, query)  # (V,)
    sims[tuple(exclude)] = float("-inf")  # a tuple indexes DIMENSIONS: sims[()] is every entry
    top = sims.topk(k)
    return top.indices, top.values


def nn_whole_matrix_length(query, W_E, k, exclude=()):
    sims = (W_E @ query) / (W_E.norm() * query.norm())  # W_E.norm() without dim: one number for all rows
    sims[list(exclude)] = float("-inf")
    top = sims.topk(k)
    return top.indices, top.values


def nn_dot_values_of_cosine_ranking(query, W_E, k, exclude=()):
    ids, _ = nearest_neighbours(query, W_E, k, exclude)
    return ids, W_E[ids] @ query  # ranked by cosine, but the dot products returned


def nn_unsorted_topk(query, W_E, k, exclude=()):
    sims = cosine_similarity(W_E, query)
    sims[list(exclude)] = float("-inf")
    top = sims.topk(k, sorted=False)  # the right k, in no promised order
    return top.indices, top.values


def nn_only_query_normalised(query, W_E, k, exclude=()):
    sims = W_E @ (query / query.norm())  # the rows' lengths kept
    sims[list(exclude)] = float("-inf")
    top = sims.topk(k)
    return top.indices, top.values

def nn_masked_where(query, W_E, k, exclude=()):
    sims = (W_E / W_E.norm(dim=-1, keepdim=True)) @ (query / query.norm())  # (V,)
    banned = torch.zeros(W_E.shape[0], dtype=torch.bool)
    banned[list(exclude)] = True
    top = torch.where(banned, torch.tensor(float("-inf")), sims).topk(k)
    return top.indices, top.values


def nn_python_sort(query, W_E, k, exclude=()):
    sims = cosine_similarity(W_E, query)
    allowed = [i for i in range(W_E.shape[0]) if i not in set(exclude)]
    best = sorted(allowed, key=lambda i: float(sims[i]), reverse=True)[:k]
    ids = torch.tensor(best, dtype=torch.long)
    return ids, sims[ids]


def _vocab(gen, V, D):
    """Rows with very different lengths, so that dot product and cosine rank them differently."""
    lengths = torch.rand(V, 1, generator=gen) * 4.5 + 0.5  # (V, 1) in [0.5, 5)
    directions = _randn(gen, V, D)
    return directions / directions.norm(dim=-1, keepdim=True) * lengths


def _nn_cases(gen, hidden):
    cases = []
    sizes = [(12, 4, 3), (30, 6, 5)] + ([(40, 8, 5), (100, 16, 10)] if hidden else [])
    for V, D, k in sizes:
        W_E = _vocab(gen, V, D)
        word = int(torch.randint(0, V, (1,), generator=gen))
        cases.append(Case((W_E[word].clone(), W_E, k), {"exclude": (word,)}, "a word's neighbours",
                          f"neighbours of word {word} among {V}, k={k}, excluding the word itself"))
    for V, D, k in [(20, 6, 4)] + ([(60, 10, 6)] if hidden else []):
        W_E = _vocab(gen, V, D)
        cases.append(Case((_randn(gen, D), W_E, k), {"exclude": ()}, "any vector",
                          f"a new vector among {V} words, k={k}, nothing excluded"))
    # the excluded ids are the 2nd and 5th most similar, not the top: skipping the first len(exclude) results
    # instead of excluding those ids fails here
    for V, D, k in [(20, 6, 4)] + ([(50, 8, 6)] if hidden else []):
        W_E = _vocab(gen, V, D)
        query = _randn(gen, D)
        order = cosine_similarity(W_E, query).argsort(descending=True).tolist()
        exclude = (order[1], order[4])
        cases.append(Case((query, W_E, k), {"exclude": exclude}, "any vector",
                          f"a new vector among {V} words, k={k}, excluding its 2nd and 5th most similar words"))
    # most words point away from the query: some of the k neighbours have a NEGATIVE cosine, so an excluded
    # word whose similarity was set to 0 (instead of -inf) would still make the list
    for V, D, k in [(10, 4, 5)] + ([(30, 8, 12)] if hidden else []):
        W_E = _vocab(gen, V, D)
        word = int(torch.randint(0, V, (1,), generator=gen))
        direction = W_E[word] / W_E[word].norm()
        W_E = W_E - 2.5 * (W_E @ direction).abs().unsqueeze(-1) * direction  # push every row away ...
        W_E[word] = direction * 2.0  # ... but the query word itself
        cases.append(Case((W_E[word].clone(), W_E, k), {"exclude": (word,)}, "few similar words",
                          f"{V} words, most pointing away from word {word}, k={k}"))
    # k=1: still tensors of shape (1,) (a .squeeze() would return 0-d tensors)
    W_E = _vocab(gen, 15, 5)
    cases.append(Case((_randn(gen, 5), W_E, 1), {"exclude": ()}, "any vector",
                      "k=1: one neighbour, still returned as tensors of shape (1,)"))
    return cases


NEAREST = Exercise(
    id="01.nearest_neighbours", notebook=NOTEBOOK, function="nearest_neighbours", points=3,
    title="Nearest neighbours by cosine similarity", minutes=15,
    reference=nearest_neighbours, make_cases=_nn_cases, atol=1e-5, rtol=1e-4,
    alternatives=[Alternative("torch.where mask on unit vectors", nn_masked_where),
                  Alternative("Python sorted() over the allowed ids", nn_python_sort)],
    mistakes=[
        KnownMistake("similarity includes the query itself",
                     "Your list contains an id from `exclude` (usually the query word itself, whose cosine with "
                     "its own vector is 1). Set those similarities to -inf before taking the top k.",
                     nn_includes_excluded),
        KnownMistake("ranked by dot product instead of cosine",
                     "You rank the words by the plain dot product W_E @ query, which favours long vectors. Rank "
                     "by cosine similarity: divide by the lengths of the rows and of the query.",
                     nn_by_dot_product),
        KnownMistake("dot products instead of cosine similarities",
                     "You return (and rank by) plain dot products. Both the ranking and the returned "
                     "similarities should be cosines, between -1 and 1.",
                     nn_dot_product_values),
        KnownMistake("least similar instead of most similar",
                     "You return the words with the SMALLEST similarity. Take the k largest, most similar first "
                     "(topk(k) or a descending sort).",
                     nn_least_similar),
        KnownMistake("most similar last (ascending order)",
                     "You return the right k words but the least similar of them first (argsort()[-k:] sorts "
                     "ascending). Most similar first: sims.topk(k), or argsort(descending=True)[:k].",
                     nn_ascending_order),
        KnownMistake("excluded ids set to 0 instead of -inf",
                     "You set the excluded similarities to 0. A cosine can be negative, so 0 still beats the words "
                     "that point away from the query: set them to float('-inf').",
                     nn_excluded_set_to_zero),
        KnownMistake("top k taken before removing the excluded ids",
                     "You take the top k and then remove the excluded ids, so fewer than k remain. Exclude first "
                     "(similarity -inf), then take the top k.",
                     nn_k_before_excluding),
        KnownMistake("ids and similarities swapped",
                     "You return (similarities, ids). The task asks for the pair (ids, sims): ids first.",
                     nn_ids_sims_swapped),
        KnownMistake("ids of the filtered rows",
                     "You drop the excluded rows and return positions in the SHORTER matrix: every id after an "
                     "excluded one is off by one. Keep all rows and set the excluded similarities to -inf, or map "
                     "the positions back to ids.",
                     nn_filtered_ids_not_mapped_back),
        KnownMistake("query's length not divided out",
                     "Your similarities are divided by the rows' lengths but not by the query's: the ranking is "
                     "right, the values are |query| times too large. Divide by query.norm() too.",
                     nn_query_length_kept),
        KnownMistake("top k + 1 without the first, instead of `exclude`",
                     "You take the top k + 1 and drop the first, assuming it is the query word. Use `exclude`: "
                     "when nothing is excluded the first one is a real neighbour, and an excluded id need not be "
                     "the most similar.",
                     nn_drop_the_top_one),
        KnownMistake("sims[exclude] with the tuple itself",
                     "You index sims[exclude] with `exclude` as it comes, a tuple. A tuple index picks DIMENSIONS, "
                     "not positions: with exclude=() sims[()] is the whole tensor, so every similarity becomes -inf "
                     "(and 3 ids would be 3 dimensions). Index with a list: sims[list(exclude)] = float('-inf').",
                     nn_tuple_index),
        KnownMistake("lengths of the whole matrix",
                     "You divide by W_E.norm() without dim=-1: one length for the whole matrix, so the ranking is "
                     "by plain dot product and the values are not cosines. Each row needs its own length: "
                     "W_E.norm(dim=-1).",
                     nn_whole_matrix_length),
        KnownMistake("dot products returned with a cosine ranking",
                     "Your ids are right (ranked by cosine), but the similarities you return are plain dot products "
                     "W_E[ids] @ query. Return the cosines you ranked by, between -1 and 1.",
                     nn_dot_values_of_cosine_ranking),
        KnownMistake("first len(exclude) results dropped",
                     "You take the top k + len(exclude) and drop the first len(exclude), assuming the excluded ids "
                     "are the most similar. They need not be (one case excludes the 2nd and 5th most similar "
                     "words): set the similarities of the ids in `exclude` to -inf, then take the top k.",
                     nn_drop_first_len_exclude),
        KnownMistake("topk(sorted=False)",
                     "You call topk(k, sorted=False): the right k words, but not most similar first. Keep the "
                     "default sorted=True (or sort them), so that ids[0] is the nearest neighbour.",
                     nn_unsorted_topk),
        KnownMistake("only the query normalised",
                     "You divide by the query's length but not by the rows': W_E @ (query / |query|) still favours "
                     "long rows. Divide each row's dot product by that row's length too: "
                     "(W_E @ query) / (W_E.norm(dim=-1) * query.norm()).",
                     nn_only_query_normalised),
    ],
)


# ---------------------------------------------------------------------------------------------------
# 01.analogy
# ---------------------------------------------------------------------------------------------------


def analogy_sign_flipped(a, b, c, W_E, k=1):
    u = _unit_rows(W_E)
    return nearest_neighbours(u[a] - u[b] + u[c], W_E, k, exclude=(a, b, c))


def analogy_inputs_not_excluded(a, b, c, W_E, k=1):
    u = _unit_rows(W_E)
    return nearest_neighbours(u[b] - u[a] + u[c], W_E, k)


def analogy_rows_not_normalised(a, b, c, W_E, k=1):
    return nearest_neighbours(W_E[b] - W_E[a] + W_E[c], W_E, k, exclude=(a, b, c))


def analogy_by_dot_product(a, b, c, W_E, k=1):
    u = _unit_rows(W_E)
    return nn_dot_product_values(u[b] - u[a] + u[c], W_E, k, exclude=(a, b, c))


def analogy_b_minus_c(a, b, c, W_E, k=1):
    u = _unit_rows(W_E)
    return nearest_neighbours(u[b] - u[c] + u[a], W_E, k, exclude=(a, b, c))


def analogy_target_length_kept(a, b, c, W_E, k=1):
    u = _unit_rows(W_E)
    sims = u @ (u[b] - u[a] + u[c])  # cosines times |target|
    sims[[a, b, c]] = float("-inf")
    top = sims.topk(k)
    return top.indices, top.values


def analogy_k_ignored(a, b, c, W_E, k=1):
    return EMB.analogy(a, b, c, W_E, k=1)


def analogy_normalised_wrong_axis(a, b, c, W_E, k=1):
    u = W_E / W_E.norm(dim=0, keepdim=True)  # columns of length 1, not rows
    return nearest_neighbours(u[b] - u[a] + u[c], W_E, k, exclude=(a, b, c))


def analogy_a_not_excluded(a, b, c, W_E, k=1):
    u = _unit_rows(W_E)
    return nearest_neighbours(u[b] - u[a] + u[c], W_E, k, exclude=(b, c))


def analogy_c_subtracted(a, b, c, W_E, k=1):
    u = _unit_rows(W_E)
    return nearest_neighbours(u[b] - u[a] - u[c], W_E, k, exclude=(a, b, c))


def analogy_c_not_excluded(a, b, c, W_E, k=1):
    u = _unit_rows(W_E)
    return nearest_neighbours(u[b] - u[a] + u[c], W_E, k, exclude=(a, b))


def analogy_b_not_excluded(a, b, c, W_E, k=1):
    u = _unit_rows(W_E)
    return nearest_neighbours(u[b] - u[a] + u[c], W_E, k, exclude=(a, c))


def analogy_excluded_set_to_zero(a, b, c, W_E, k=1):
    u = _unit_rows(W_E)
    target = u[b] - u[a] + u[c]
    sims = cosine_similarity(W_E, target)  # (V,)
    sims[[a, b, c]] = 0.0  # still beats every candidate with a negative cosine
    top = sims.topk(k)
    return top.indices, top.values


def analogy_c_not_normalised(a, b, c, W_E, k=1):
    u = _unit_rows(W_E)
    return nearest_neighbours(u[b] - u[a] + W_E[c], W_E, k, exclude=(a, b, c))


def analogy_c_forgotten(a, b, c, W_E, k=1):
    u = _unit_rows(W_E)
    return nearest_neighbours(u[b] - u[a], W_E, k, exclude=(a, b, c))


def analogy_offset_normalised(a, b, c, W_E, k=1):
    u = _unit_rows(W_E)
    offset = u[b] - u[a]
    return nearest_neighbours(offset / offset.norm() + u[c], W_E, k, exclude=(a, b, c))


def analogy_only_b_excluded(a, b, c, W_E, k=1):
    u = _unit_rows(W_E)
    return nearest_neighbours(u[b] - u[a] + u[c], W_E, k, exclude=(b,))

def analogy_masked_einsum(a, b, c, W_E, k=1):
    u = _unit_rows(W_E)
    target = u[b] - u[a] + u[c]  # (D,)
    sims = torch.einsum("vd,d->v", u, target) / target.norm()  # (V,) cosines
    banned = torch.zeros(len(sims), dtype=torch.bool)
    banned[[a, b, c]] = True
    top = sims.masked_fill(banned, float("-inf")).topk(k)
    return top.indices, top.values


def analogy_sorted(a, b, c, W_E, k=1):
    u = _unit_rows(W_E)
    target = (u[b] + u[c]) - u[a]
    sims = cosine_similarity(W_E, target.expand_as(W_E))
    order = [int(i) for i in sims.argsort(descending=True) if int(i) not in (a, b, c)][:k]
    ids = torch.tensor(order, dtype=torch.long)
    return ids, sims[ids]


def _analogy_vocab(gen, V, D):
    """A vocabulary with one planted analogy: W_E[3] - W_E[2] ~ W_E[1] - W_E[0] (think queen - woman ~ king - man)."""
    W_E = _vocab(gen, V, D)
    offset = _randn(gen, D, scale=1.5)
    W_E[1] = W_E[0] + offset  # man -> king
    W_E[3] = W_E[2] + offset + _randn(gen, D, scale=0.1)  # woman -> queen
    perm = torch.randperm(V, generator=gen)  # hide the planted words among the others
    return W_E[perm], [int((perm == i).nonzero()) for i in range(4)]


def _analogy_cases(gen, hidden):
    cases = []
    sizes = [(15, 6, 1), (30, 8, 3)] + ([(60, 12, 5), (120, 16, 1)] if hidden else [])
    for V, D, k in sizes:
        W_E, (man, king, woman, queen) = _analogy_vocab(gen, V, D)
        cases.append(Case((man, king, woman, W_E), {"k": k}, "planted analogy",
                          f"{V} words, man : king :: woman : ? (k={k})"))
    for V, D in [(25, 5)] + ([(50, 10)] if hidden else []):
        W_E = _vocab(gen, V, D)
        a, b, c = (int(i) for i in torch.randperm(V, generator=gen)[:3])
        cases.append(Case((a, b, c, W_E), {"k": 4}, "random words", f"{V} random words, k=4"))
    # a, b, c nearly the same direction: the target lands next to all three, so each must be excluded
    for V, D in [(20, 6)] + ([(40, 8)] if hidden else []):
        W_E = _vocab(gen, V, D)
        a, b, c = (int(i) for i in torch.randperm(V, generator=gen)[:3])
        centre = _randn(gen, D)
        for i in (a, b, c):
            W_E[i] = (centre + _randn(gen, D, scale=0.05)) * float(W_E[i].norm() / centre.norm())
        cases.append(Case((a, b, c, W_E), {"k": 3}, "random words", f"{V} words, a, b, c nearly synonyms, k=3"))
    # only two candidates point towards the target, the rest away from it: with k=4 the answer holds negative
    # cosines, so a, b, c given similarity 0 (instead of -inf) would still make the list
    for V, D in [(16, 5)] + ([(30, 8)] if hidden else []):
        W_E = _vocab(gen, V, D)
        a, b, c, p1, p2 = (int(i) for i in torch.randperm(V, generator=gen)[:5])
        u = _unit_rows(W_E)
        d = u[b] - u[a] + u[c]
        d = d / d.norm()  # (D,) the target's direction
        for i in range(V):
            if i not in (a, b, c):
                W_E[i] = W_E[i] - 2.5 * (W_E[i] @ d).abs() * d  # now pointing away from the target
        for i in (p1, p2):
            W_E[i] = (d + _randn(gen, D, scale=0.3)) * float(W_E[i].norm())  # ... but two candidates
        cases.append(Case((a, b, c, W_E), {"k": 4}, "few similar words",
                          f"{V} words, only 2 candidates near the target, k=4"))
    return cases


ANALOGY = Exercise(
    id="01.analogy", notebook=NOTEBOOK, function="analogy", points=3,
    title="Word analogies: a is to b as c is to ?", minutes=10,
    reference=EMB.analogy, make_cases=_analogy_cases, atol=1e-5, rtol=1e-4,
    alternatives=[Alternative("einsum cosines and masked_fill", analogy_masked_einsum),
                  Alternative("argsort and a Python filter", analogy_sorted)],
    mistakes=[
        KnownMistake("analogy sign flipped (a - b + c)",
                     "You search near a - b + c. The offset that turns a into b is b - a; add it to c: "
                     "b - a + c (king - man + woman).",
                     analogy_sign_flipped),
        KnownMistake("query words not excluded",
                     "Your answer can be one of a, b, c themselves (the target vector is usually closest to b or "
                     "c). Exclude the three input words: nearest_neighbours(target, W_E, k, exclude=(a, b, c)).",
                     analogy_inputs_not_excluded),
        KnownMistake("rows not normalised",
                     "You add the raw rows W_E[b] - W_E[a] + W_E[c], so the longest of the three vectors dominates "
                     "the direction. Divide each row by its length first: u = W_E / W_E.norm(dim=-1, keepdim=True), "
                     "then u[b] - u[a] + u[c].",
                     analogy_rows_not_normalised),
        KnownMistake("ranked by dot product instead of cosine",
                     "You rank candidates by plain dot products with the target. Use cosine similarity, so that "
                     "long vectors do not win by their length alone.",
                     analogy_by_dot_product),
        KnownMistake("b and c swapped in the offset",
                     "You compute b - c + a. The question is a : b :: c : ?, so the offset b - a is applied to c: "
                     "b - a + c.",
                     analogy_b_minus_c),
        KnownMistake("similarities not divided by the target's length",
                     "You rank by u @ target, right order, but the similarities you return are cosines times "
                     "|target| (target = u_b - u_a + u_c is not of length 1). Divide by target.norm(), or use "
                     "nearest_neighbours.",
                     analogy_target_length_kept),
        KnownMistake("k ignored",
                     "You always return one neighbour. Pass k on: nearest_neighbours(target, W_E, k, exclude=(a, b, c)).",
                     analogy_k_ignored),
        KnownMistake("rows normalised over the wrong axis",
                     "You divide W_E by W_E.norm(dim=0, keepdim=True): columns of length 1, not rows. Each word's "
                     "row must have length 1: W_E.norm(dim=-1, keepdim=True).",
                     analogy_normalised_wrong_axis),
        KnownMistake("c subtracted",
                     "You compute b - a - c. The offset b - a is ADDED to c: u_b - u_a + u_c.",
                     analogy_c_subtracted),
        KnownMistake("a not excluded",
                     "Your answer can be a itself. Exclude all three input words, a, b and c: when they are close "
                     "together the target lands next to each of them.",
                     analogy_a_not_excluded),
        KnownMistake("c not excluded",
                     "Your answer can be c itself (the target u_b - u_a + u_c is usually closest to c). Exclude all "
                     "three input words: exclude=(a, b, c).",
                     analogy_c_not_excluded),
        KnownMistake("b not excluded",
                     "Your answer can be b itself (the target u_b - u_a + u_c is often closest to b). Exclude all "
                     "three input words: exclude=(a, b, c).",
                     analogy_b_not_excluded),
        KnownMistake("a, b, c set to 0 instead of -inf",
                     "You set the similarities of a, b, c to 0. A cosine can be negative, so 0 still beats every "
                     "candidate pointing away from the target and a, b or c make the list: set them to "
                     "float('-inf').",
                     analogy_excluded_set_to_zero),
        KnownMistake("c's row not normalised",
                     "You normalise a and b but add c's raw row: a long c dominates the target. Use the unit row of "
                     "every word: u_b - u_a + u_c with u = W_E / W_E.norm(dim=-1, keepdim=True).",
                     analogy_c_not_normalised),
        KnownMistake("c forgotten",
                     "Your target is u_b - u_a: the offset alone. Apply the offset to c: u_b - u_a + u_c.",
                     analogy_c_forgotten),
        KnownMistake("offset normalised before adding c",
                     "You scale the offset u_b - u_a to length 1 before adding u_c, which changes its weight against "
                     "c. Add the unit rows as they are: u_b - u_a + u_c.",
                     analogy_offset_normalised),
        KnownMistake("only b excluded",
                     "You exclude b only. a and c must never be the answer either: exclude=(a, b, c).",
                     analogy_only_b_excluded),
    ],
)

register(ONE_HOT, EMBED, COSINE, NEAREST, ANALOGY)
