"""Embeddings: lookups equal torch's own modules; similarity equals F.cosine_similarity;
word vectors trained on the toy corpus solve its analogies (and are fast and seeded)."""

import time

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from course_lib import data
from course_lib.embeddings import (
    analogy, analogy_vector, cooccurrence_counts, cosine_similarity, embed, nearest_neighbours, one_hot,
    ppmi_matrix, skipgram_pairs, train_word_embeddings,
)


# ---------------------------------------------------------------------------------------
# one_hot / embed
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(7,), (2, 5), (3, 1, 4)])
def test_one_hot_matches_torch(shape):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 11, shape, generator=g)
    out = one_hot(ids, 11)
    assert out.dtype == torch.float32 and out.shape == (*shape, 11)
    torch.testing.assert_close(out, F.one_hot(ids, 11).float())


def test_one_hot_rejects_bad_ids():
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        one_hot(torch.tensor([0, 5]), 5)
    with pytest.raises(ValueError, match="integer tensor"):
        one_hot(torch.tensor([0.0, 1.0]), 5)


def test_embed_is_one_hot_times_W_E_and_equals_nn_embedding():
    g = torch.Generator().manual_seed(1)
    V, D = 13, 6
    W_E = torch.randn(V, D, generator=g)
    ids = torch.randint(0, V, (4, 9), generator=g)
    out = embed(ids, W_E)
    assert out.shape == (4, 9, D)
    torch.testing.assert_close(out, one_hot(ids, V) @ W_E)
    torch.testing.assert_close(out, nn.Embedding.from_pretrained(W_E)(ids))


def test_embed_gradient_flows_to_the_looked_up_rows_only():
    W_E = torch.randn(5, 3, requires_grad=True)
    embed(torch.tensor([1, 1, 4]), W_E).sum().backward()
    expected = torch.zeros(5, 3)
    expected[1] = 2.0
    expected[4] = 1.0
    torch.testing.assert_close(W_E.grad, expected)


def test_embed_validates_shapes():
    with pytest.raises(ValueError, match=r"expected an embedding matrix \(V, D\)"):
        embed(torch.tensor([0]), torch.randn(3))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        embed(torch.tensor([3]), torch.randn(3, 2))


# ---------------------------------------------------------------------------------------
# cosine similarity, neighbours, analogies
# ---------------------------------------------------------------------------------------
def test_cosine_similarity_matches_torch_including_broadcast_and_zero_vectors():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(4, 7, generator=g), torch.randn(4, 7, generator=g)
    torch.testing.assert_close(cosine_similarity(a, b), F.cosine_similarity(a, b, dim=-1))
    q = torch.randn(7, generator=g)
    torch.testing.assert_close(cosine_similarity(q, b), F.cosine_similarity(q.expand_as(b), b, dim=-1))
    zero, tiny = torch.zeros(7), torch.full((7,), 1e-10)
    for x in (zero, tiny):
        torch.testing.assert_close(cosine_similarity(x, q), F.cosine_similarity(x, q, dim=0))


def test_cosine_similarity_rejects_different_dimensions():
    with pytest.raises(ValueError, match="a has D=3.*b has D=4"):
        cosine_similarity(torch.randn(3), torch.randn(2, 4))


def test_nearest_neighbours_matches_a_brute_force_ranking():
    g = torch.Generator().manual_seed(3)
    W_E = torch.randn(30, 5, generator=g)
    q = torch.randn(5, generator=g)
    idx, sims = nearest_neighbours(q, W_E, k=4, exclude=[0, 7])
    all_sims = F.cosine_similarity(q.unsqueeze(0), W_E, dim=-1)
    ranking = [i for i in all_sims.argsort(descending=True).tolist() if i not in (0, 7)]
    assert idx.tolist() == ranking[:4]
    torch.testing.assert_close(sims, all_sims[idx])
    assert idx.dtype == torch.long


def test_nearest_neighbours_validates_k_and_query():
    W_E = torch.randn(5, 3)
    with pytest.raises(ValueError, match="k is 5"):
        nearest_neighbours(torch.randn(3), W_E, k=5, exclude=[0])
    with pytest.raises(ValueError, match=r"query has shape \(4,\)"):
        nearest_neighbours(torch.randn(4), W_E)


def test_analogy_on_hand_built_vectors():
    # features: (royal, male, female, person)
    words = ["king", "queen", "man", "woman", "apple"]
    W_E = torch.tensor([[1.0, 1, 0, 1], [1, 0, 1, 1], [0, 1, 0, 1], [0, 0, 1, 1], [0, 0, 0, 0.2]])
    idx, _ = analogy(2, 0, 3, W_E)  # man : king :: woman : ?
    assert words[idx.item()] == "queen"
    unit = W_E / W_E.norm(dim=1, keepdim=True)
    torch.testing.assert_close(analogy_vector(2, 0, 3, W_E), unit[0] - unit[2] + unit[3])


def test_analogy_needs_a_tokenizer_for_words():
    with pytest.raises(ValueError, match="tokenizer"):
        analogy("man", "king", "woman", torch.randn(4, 2))


# ---------------------------------------------------------------------------------------
# counting helpers
# ---------------------------------------------------------------------------------------
def test_skipgram_pairs_and_counts():
    pairs = skipgram_pairs([[0, 1, 2]], window=1)
    assert sorted(map(tuple, pairs.tolist())) == [(0, 1), (1, 0), (1, 2), (2, 1)]
    C = cooccurrence_counts([[0, 1, 2], [0, 1]], vocab_size=3, window=2)
    assert torch.equal(C, C.T) and C[0, 1] == 2 and C[0, 2] == 1 and C[2, 2] == 0


def test_ppmi_matches_the_formula_elementwise():
    C = torch.tensor([[0.0, 4, 1], [4, 0, 2], [1, 2, 0]])
    P = ppmi_matrix(C, alpha=1.0)
    total = C.sum()
    for w in range(3):
        for c in range(3):
            if C[w, c] == 0:
                assert P[w, c] == 0
            else:
                pmi = torch.log(C[w, c] * total / (C[w].sum() * C[:, c].sum()))
                torch.testing.assert_close(P[w, c], pmi.clamp_min(0))


# ---------------------------------------------------------------------------------------
# learned word vectors
# ---------------------------------------------------------------------------------------
def _top_answer(W_E, tok, a, b, c):
    idx, _ = analogy(a, b, c, W_E, tokenizer=tok)
    return tok.itos[idx.item()]


@pytest.fixture(scope="module")
def sgns_vectors():
    start = time.perf_counter()
    W_E, tok = train_word_embeddings(data.toy_corpus(), seed=0)
    seconds = time.perf_counter() - start
    print(f"\ntrain_word_embeddings (sgns, toy_corpus): {seconds:.2f} s")
    return W_E, tok, seconds


def test_trained_embeddings_have_one_row_per_word(sgns_vectors):
    W_E, tok, _ = sgns_vectors
    words = {w for s in data.toy_corpus() for w in s.split()}
    assert W_E.shape == (len(words), 64) and set(tok.vocab) == words
    assert torch.isfinite(W_E).all()


def test_king_minus_man_plus_woman_is_queen(sgns_vectors):
    W_E, tok, _ = sgns_vectors
    assert _top_answer(W_E, tok, "man", "king", "woman") == "queen"


@pytest.mark.parametrize("a, b, c, expected", data.ANALOGIES)
def test_all_corpus_analogies_hold(sgns_vectors, a, b, c, expected):
    W_E, tok, _ = sgns_vectors
    assert _top_answer(W_E, tok, a, b, c) == expected


def test_training_is_deterministic_for_a_seed(sgns_vectors):
    W_E, _, _ = sgns_vectors
    again, _ = train_word_embeddings(data.toy_corpus(), seed=0)
    torch.testing.assert_close(again, W_E, rtol=0, atol=0)
    other, _ = train_word_embeddings(data.toy_corpus(), seed=1, epochs=1)
    assert not torch.equal(other, W_E)


def test_training_loss_goes_down():
    history = []
    train_word_embeddings(data.toy_corpus(), epochs=8, seed=0, history=history)
    assert len(history) == 8 and history[-1] < history[0]


@pytest.mark.parametrize("d", [None, 120])
def test_ppmi_method_solves_the_analogies_too(d):
    W_E, tok = train_word_embeddings(data.toy_corpus(), method="ppmi", d=d)
    assert W_E.shape == (tok.vocab_size, d or tok.vocab_size)
    for a, b, c, expected in data.ANALOGIES:
        assert _top_answer(W_E, tok, a, b, c) == expected, (a, b, c)


def test_train_word_embeddings_validates_arguments():
    with pytest.raises(ValueError, match="method is 'glove'"):
        train_word_embeddings(["a b"], method="glove")
    with pytest.raises(ValueError, match="window is 0"):
        train_word_embeddings(["a b"], window=0)
    with pytest.raises(ValueError, match="non-empty list"):
        train_word_embeddings([])
