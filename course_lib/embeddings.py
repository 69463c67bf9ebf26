"""Unit 01: from token ids to vectors, and what the geometry of those vectors means.

An embedding matrix ``W_E`` has one row per token: shape (V, D). Looking up token
``i`` is the same as multiplying its one-hot vector by ``W_E``:

    one_hot(i) @ W_E = W_E[i]        (a (V,) row of zeros with a 1 at i, times (V, D))

which is what ``nn.Embedding`` does (without the wasteful multiplication).

Similar words get similar vectors when the vectors are *learned from data*:
:func:`train_word_embeddings` learns them from which words appear near which, and
then directions mean something: king - man + woman lands next to queen.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F

from course_lib.tokens import WordTokenizer

__all__ = [
    "one_hot", "embed", "cosine_similarity", "nearest_neighbours", "analogy_vector", "analogy",
    "cooccurrence_counts", "ppmi_matrix", "skipgram_pairs", "train_word_embeddings",
]


def _check_ids(ids: torch.Tensor, vocab_size: int, name: str = "ids") -> None:
    if not isinstance(ids, torch.Tensor):
        raise ValueError(f"{name} must be an integer tensor of token ids, got {type(ids).__name__}")
    if ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"{name} must be an integer tensor of token ids, got dtype {ids.dtype}")
    if ids.numel() and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"{name} has values in [{int(ids.min())}, {int(ids.max())}], "
                         f"expected token ids in [0, {vocab_size})")


def _check_matrix(W_E: torch.Tensor, name: str = "W_E") -> None:
    if not isinstance(W_E, torch.Tensor) or W_E.dim() != 2:
        shape = tuple(W_E.shape) if isinstance(W_E, torch.Tensor) else type(W_E).__name__
        raise ValueError(f"{name} has shape {shape}, expected an embedding matrix (V, D)")


# ----------------------------------------------------------------------------------------
# Looking up vectors
# ----------------------------------------------------------------------------------------
def one_hot(ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """One-hot vectors: ``out[..., v] = 1.0 if ids[...] == v else 0.0``.

    ids (...) integer -> (..., V) float. Same as ``F.one_hot(ids, V).float()``.
    """
    _check_ids(ids, vocab_size)
    vocab = torch.arange(vocab_size, device=ids.device)  # (V,)
    return (ids.unsqueeze(-1) == vocab).float()  # (..., 1) == (V,) -> (..., V)


def embed(ids: torch.Tensor, W_E: torch.Tensor) -> torch.Tensor:
    """Look up the row of ``W_E`` for every id: ids (...) -> (..., D).

    Mathematically ``one_hot(ids, V) @ W_E``; in practice an index ``W_E[ids]``,
    exactly like ``nn.Embedding`` with ``weight = W_E``.
    """
    _check_matrix(W_E)
    _check_ids(ids, W_E.shape[0])
    return W_E[ids]  # (..., D)


# ----------------------------------------------------------------------------------------
# Geometry: similarity, neighbours, analogies
# ----------------------------------------------------------------------------------------
def cosine_similarity(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """cos(a, b) = a . b / (max(|a|, eps) * max(|b|, eps)), over the last axis.

    a (..., D), b (..., D) -> (...). Leading axes broadcast (a (D,) against b (V, D)
    gives V similarities); the last axes must both be D. Same as
    ``F.cosine_similarity(a, b, dim=-1, eps=eps)``.
    """
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"a has D={a.shape[-1]} (shape {tuple(a.shape)}) but b has D={b.shape[-1]} "
                         f"(shape {tuple(b.shape)}): expected the same last dimension")
    dot = (a * b).sum(-1)  # (...)
    norm_a = a.norm(dim=-1).clamp_min(eps)  # (...)
    norm_b = b.norm(dim=-1).clamp_min(eps)  # (...)
    return dot / (norm_a * norm_b)


def nearest_neighbours(
    query: torch.Tensor, W_E: torch.Tensor, k: int = 5, exclude: Iterable[int] = ()
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` rows of ``W_E`` most cosine-similar to ``query``.

    query (D,), W_E (V, D) -> (indices LongTensor (k,), similarities (k,)), best first.
    Ids in ``exclude`` are never returned (e.g. the query word itself).
    """
    _check_matrix(W_E)
    if query.dim() != 1 or query.shape[0] != W_E.shape[1]:
        raise ValueError(f"query has shape {tuple(query.shape)}, expected ({W_E.shape[1]},) to match W_E {tuple(W_E.shape)}")
    exclude = sorted(set(int(i) for i in exclude))
    available = W_E.shape[0] - len(exclude)
    if not 1 <= k <= available:
        raise ValueError(f"k is {k}, expected 1 <= k <= {available} (V={W_E.shape[0]} minus {len(exclude)} excluded)")
    sims = cosine_similarity(query, W_E)  # (D,) vs (V, D) -> (V,)
    sims = sims.clone()
    sims[exclude] = float("-inf")
    top = sims.topk(k)
    return top.indices, top.values


def _to_id(word: int | str, tokenizer) -> int:
    if isinstance(word, str):
        if tokenizer is None:
            raise ValueError(f"got the word {word!r}: pass tokenizer=... to turn words into ids")
        if word not in tokenizer.stoi:
            raise ValueError(f"{word!r} is not in the tokenizer's vocabulary")
        return tokenizer.stoi[word]
    return int(word)


def analogy_vector(a: int | str, b: int | str, c: int | str, W_E: torch.Tensor, tokenizer=None) -> torch.Tensor:
    """"a is to b as c is to ?": the vector ``b - a + c`` (D,), built from unit-length rows.

    Each row is divided by its length first, so that frequent words with long vectors
    do not dominate (the usual "3CosAdd" rule). ``a``, ``b``, ``c`` are ids, or words
    when a ``tokenizer`` is given.
    """
    _check_matrix(W_E)
    ia, ib, ic = (_to_id(w, tokenizer) for w in (a, b, c))
    for name, i in (("a", ia), ("b", ib), ("c", ic)):
        if not 0 <= i < W_E.shape[0]:
            raise ValueError(f"{name} is id {i}, expected an id in [0, {W_E.shape[0]})")
    unit = W_E / W_E.norm(dim=-1, keepdim=True).clamp_min(1e-8)  # (V, D), rows of length 1
    return unit[ib] - unit[ia] + unit[ic]  # (D,)


def analogy(
    a: int | str, b: int | str, c: int | str, W_E: torch.Tensor, tokenizer=None, k: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Answer "a is to b as c is to ?" (man : king :: woman : ?).

    Returns the ``k`` nearest neighbours ``(indices (k,), similarities (k,))`` of
    ``b - a + c`` (see :func:`analogy_vector`), never a, b or c themselves.
    Decode the indices with ``tokenizer.decode`` or ``tokenizer.itos``.
    """
    v = analogy_vector(a, b, c, W_E, tokenizer)
    exclude = [_to_id(w, tokenizer) for w in (a, b, c)]
    return nearest_neighbours(v, W_E, k=k, exclude=exclude)


# ----------------------------------------------------------------------------------------
# Learning word vectors from a corpus
# ----------------------------------------------------------------------------------------
def skipgram_pairs(sentences: Sequence[Sequence[int]], window: int) -> torch.Tensor:
    """Every (center, context) pair with the context at most ``window`` words away
    (within one sentence). Returns LongTensor (N, 2)."""
    pairs = []
    for ids in sentences:
        for i, center in enumerate(ids):
            for j in range(max(0, i - window), min(len(ids), i + window + 1)):
                if j != i:
                    pairs.append((center, ids[j]))
    return torch.tensor(pairs, dtype=torch.long).view(-1, 2)  # (N, 2)


def cooccurrence_counts(sentences: Sequence[Sequence[int]], vocab_size: int, window: int) -> torch.Tensor:
    """C[w, c] = how often word c appears within ``window`` words of word w. (V, V)."""
    pairs = skipgram_pairs(sentences, window)  # (N, 2)
    counts = Counter(map(tuple, pairs.tolist()))
    C = torch.zeros(vocab_size, vocab_size)
    for (w, c), n in counts.items():
        C[w, c] = n
    return C


def ppmi_matrix(C: torch.Tensor, alpha: float = 0.75) -> torch.Tensor:
    """Positive pointwise mutual information of a co-occurrence matrix C (V, V):

        PMI(w, c) = log P(w, c) / (P(w) P_alpha(c)),   PPMI = max(PMI, 0)  (0 where C = 0)

    with P(w, c) = C[w, c] / sum(C), P(w) = row sums / sum(C), and the context
    distribution smoothed as P_alpha(c) proportional to count(c)^alpha (alpha = 0.75 as
    in word2vec), which stops rare contexts from getting huge PMI values.
    """
    total = C.sum()
    p_wc = C / total  # (V, V)
    p_w = C.sum(dim=1, keepdim=True) / total  # (V, 1)
    p_c = C.sum(dim=0, keepdim=True) ** alpha  # (1, V)
    p_c = p_c / p_c.sum()
    with torch.no_grad():
        pmi = torch.log(p_wc / (p_w * p_c))  # -inf where C == 0, nan for unused rows
    return torch.where(C > 0, pmi.clamp_min(0.0), torch.zeros_like(pmi))


def _train_ppmi(sentences, V: int, d: int | None, window: int) -> torch.Tensor:
    """Counting method: rows of the PPMI matrix, optionally compressed to d dims by SVD."""
    P = ppmi_matrix(cooccurrence_counts(sentences, V, window))  # (V, V)
    if d is None:
        return P
    if d > V:
        raise ValueError(f"d is {d}, expected d <= vocabulary size {V} for the SVD of the (V, V) PPMI matrix")
    U, S, _ = torch.linalg.svd(P)  # P = U diag(S) V^T
    return U[:, :d] * S[:d].sqrt()  # (V, d): keep the d strongest directions


def _train_sgns(sentences, V: int, d: int, window: int, epochs: int, negatives: int, lr: float,
                batch_size: int, seed: int, history: list | None) -> torch.Tensor:
    """Prediction method: skip-gram with negative sampling (word2vec).

    Two tables, W_in (V, d) for centre words and W_out (V, d) for context words.
    For a real pair (w, c) and ``negatives`` random words n_1..n_k drawn from the
    unigram distribution ^ 0.75, minimise

        -log sigmoid(W_in[w] . W_out[c]) - sum_k log sigmoid(-W_in[w] . W_out[n_k])

    i.e. make real neighbours' dot products large and random words' small.
    The word vector returned is (W_in + W_out) / 2.
    """
    g = torch.Generator().manual_seed(seed)
    pairs = skipgram_pairs(sentences, window)  # (N, 2)
    if len(pairs) == 0:
        raise ValueError("corpus has no word pairs within the window: need sentences of 2+ words")
    counts = torch.bincount(torch.tensor([i for s in sentences for i in s]), minlength=V).float()
    noise = counts ** 0.75 / (counts ** 0.75).sum()  # (V,) negative-sampling distribution

    W_in = ((torch.rand(V, d, generator=g) - 0.5) / d).requires_grad_()  # small random start
    W_out = torch.zeros(V, d, requires_grad=True)
    opt = torch.optim.Adam([W_in, W_out], lr=lr)
    # These tensors are tiny: extra threads only add overhead (a lot of it on a busy machine),
    # and with one thread the sums run in a fixed order, so a seed gives identical vectors.
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(epochs):
            order = torch.randperm(len(pairs), generator=g)
            for start in range(0, len(pairs), batch_size):
                batch = pairs[order[start:start + batch_size]]  # (B, 2)
                neg = torch.multinomial(noise, len(batch) * negatives, replacement=True, generator=g)
                neg = neg.view(len(batch), negatives)  # (B, k)
                w = W_in[batch[:, 0]]  # (B, d)
                pos_score = (w * W_out[batch[:, 1]]).sum(-1)  # (B,)
                neg_score = (w.unsqueeze(1) * W_out[neg]).sum(-1)  # (B, 1, d) * (B, k, d) -> (B, k)
                loss = -(F.logsigmoid(pos_score) + F.logsigmoid(-neg_score).sum(-1)).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            if history is not None:
                history.append(loss.item())
    finally:
        torch.set_num_threads(n_threads)
    return ((W_in + W_out) / 2).detach()


def train_word_embeddings(
    corpus: Sequence[str],
    d: int | None = 64,
    window: int = 4,
    epochs: int = 60,
    seed: int = 0,
    method: str = "sgns",
    negatives: int = 5,
    lr: float = 0.01,
    batch_size: int = 1024,
    history: list | None = None,
) -> tuple[torch.Tensor, WordTokenizer]:
    """Learn one vector per word from which words appear near which.

    Returns ``(W_E (V, d), tokenizer)``; row ``tokenizer.stoi[word]`` is ``word``'s vector.
    Words are ``sentence.split()``; neighbours are words at most ``window`` apart.

    * ``method="sgns"`` (default): skip-gram with negative sampling trained by gradient
      descent for ``epochs`` passes -- the same kind of learning as the embedding layer of
      a transformer. Deterministic for a given ``seed``. About a second on
      :func:`course_lib.data.toy_corpus` with one CPU core.
    * ``method="ppmi"``: count co-occurrences, take positive PMI, and (when ``d`` is not
      None) keep the ``d`` strongest SVD directions. No randomness, no training loop.

    ``history``: pass a list to receive the SGNS loss after each epoch.
    """
    sentences_text = list(corpus)
    if not sentences_text or not all(isinstance(s, str) for s in sentences_text):
        raise ValueError("corpus must be a non-empty list of sentences (str)")
    if window < 1:
        raise ValueError(f"window is {window}, expected >= 1")
    tok = WordTokenizer(sentences_text, specials=())
    sentences = [tok.encode(s) for s in sentences_text]
    if method == "ppmi":
        return _train_ppmi(sentences, tok.vocab_size, d, window), tok
    if method == "sgns":
        if d is None or d < 1:
            raise ValueError(f"d is {d}, expected a positive int for method='sgns'")
        if epochs < 1:
            raise ValueError(f"epochs is {epochs}, expected >= 1")
        W_E = _train_sgns(sentences, tok.vocab_size, d, window, epochs, negatives, lr, batch_size, seed, history)
        return W_E, tok
    raise ValueError(f"method is {method!r}, expected 'sgns' or 'ppmi'")
