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
from .core import Case, Exercise, Forbidden, KnownMistake, Property
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


def _one_hot_cases(gen, hidden):
    cases = [Case((torch.tensor([2, 0, 1, 0]), 5), {}, "basic", "ids [2, 0, 1, 0], vocabulary of 5")]
    n = 3 if hidden else 1
    for _ in range(n):
        V = int(torch.randint(8, 30, (1,), generator=gen))
        ids = _randint(gen, V - 2, 7)  # never the last ids: the vocabulary is larger than what is seen
        cases.append(Case((ids, V), {}, "basic", f"7 ids, vocabulary of {V}"))
    cases.append(Case((_randint(gen, 10, 3, 4), 12), {}, "batched", "a (3, 4) batch of ids, vocabulary of 12"))
    if hidden:
        cases.append(Case((_randint(gen, 50, 2, 3, 5), 64), {}, "batched", "a (2, 3, 5) batch, vocabulary of 64"))
    return cases


def _rows_are_one_hot(case, out, derived) -> bool:
    return bool(torch.all(out.sum(-1) == 1) and torch.all((out == 0) | (out == 1)))


ONE_HOT = Exercise(
    id="01.one_hot", notebook=NOTEBOOK, function="one_hot", points=2,
    title="One-hot vectors", minutes=5,
    reference=one_hot, make_cases=_one_hot_cases, forbidden=[ONE_HOT_BUILTINS],
    properties=[Property("exactly one 1 per vector", "each one-hot vector has a single 1.0 and zeros elsewhere",
                         _rows_are_one_hot)],
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


def _embed_cases(gen, hidden):
    cases = []
    sizes = [(6, 4, (5,))] + ([(20, 8, (9,)), (50, 16, (4, 7))] if hidden else [])
    for V, D, shape in sizes:
        cases.append(Case((_randint(gen, V, *shape), _randn(gen, V, D)), {}, "basic",
                          f"ids {shape}, W_E ({V}, {D})"))
    cases.append(Case((_randint(gen, 10, 3, 5), _randn(gen, 10, 10)), {}, "batched",
                      "a (3, 5) batch, square W_E (10, 10)"))
    if hidden:
        cases.append(Case((_randint(gen, 12, 2, 3, 4), _randn(gen, 12, 12)), {}, "batched",
                          "a (2, 3, 4) batch, square W_E (12, 12)"))
    return cases


EMBED = Exercise(
    id="01.embed", notebook=NOTEBOOK, function="embed", points=2,
    title="Embedding lookup", minutes=5,
    reference=embed, make_cases=_embed_cases, forbidden=[EMBEDDING_BUILTINS],
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
    return cases


def _in_minus_one_one(case, out, derived) -> bool:
    return bool(((out >= -1 - 1e-5) & (out <= 1 + 1e-5)).all())


def _scale_invariant(case, out, derived) -> bool:
    return bool(torch.allclose(derived[0], out, atol=1e-5, rtol=1e-4))


def _scaled_inputs(case):
    a, b = case.args
    return [Case((a * 7.0, b * 0.25), {}, case.group, "a scaled by 7, b by 0.25")]


COSINE = Exercise(
    id="01.cosine_similarity", notebook=NOTEBOOK, function="cosine_similarity", points=2,
    title="Cosine similarity", minutes=10,
    reference=cosine_similarity, make_cases=_cosine_cases, atol=1e-5, rtol=1e-4,
    forbidden=[COSINE_BUILTINS],
    properties=[
        Property("between -1 and 1", "a cosine lies between -1 (opposite) and 1 (same direction)",
                 _in_minus_one_one),
        Property("ignores the lengths", "scaling a or b by a positive number must not change their cosine",
                 _scale_invariant, _scaled_inputs),
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


def _vocab(gen, V, D):
    """Rows with very different lengths, so that dot product and cosine rank them differently."""
    lengths = torch.rand(V, 1, generator=gen) * 4.5 + 0.5  # (V, 1) in [0.5, 5)
    directions = _randn(gen, V, D)
    return directions / directions.norm(dim=-1, keepdim=True) * lengths


def _nn_cases(gen, hidden):
    cases = []
    sizes = [(12, 4, 3)] + ([(40, 8, 5), (100, 16, 10)] if hidden else [])
    for V, D, k in sizes:
        W_E = _vocab(gen, V, D)
        word = int(torch.randint(0, V, (1,), generator=gen))
        cases.append(Case((W_E[word].clone(), W_E, k), {"exclude": (word,)}, "a word's neighbours",
                          f"neighbours of word {word} among {V}, k={k}, excluding the word itself"))
    for V, D, k in [(20, 6, 4)] + ([(60, 10, 6)] if hidden else []):
        W_E = _vocab(gen, V, D)
        cases.append(Case((_randn(gen, D), W_E, k), {"exclude": ()}, "any vector",
                          f"a new vector among {V} words, k={k}, nothing excluded"))
    return cases


NEAREST = Exercise(
    id="01.nearest_neighbours", notebook=NOTEBOOK, function="nearest_neighbours", points=3,
    title="Nearest neighbours by cosine similarity", minutes=15,
    reference=nearest_neighbours, make_cases=_nn_cases, atol=1e-5, rtol=1e-4,
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
    return cases


ANALOGY = Exercise(
    id="01.analogy", notebook=NOTEBOOK, function="analogy", points=3,
    title="Word analogies: a is to b as c is to ?", minutes=10,
    reference=EMB.analogy, make_cases=_analogy_cases, atol=1e-5, rtol=1e-4,
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
                     "long vectors (frequent words) do not win by their length alone.",
                     analogy_by_dot_product),
        KnownMistake("b and c swapped in the offset",
                     "You compute b - c + a. The question is a : b :: c : ?, so the offset b - a is applied to c: "
                     "b - a + c.",
                     analogy_b_minus_c),
    ],
)

register(ONE_HOT, EMBED, COSINE, NEAREST, ANALOGY)
