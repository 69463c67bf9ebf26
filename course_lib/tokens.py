"""Unit 01: turning text into integers (and back).

A language model never sees letters; it sees a sequence of integer *token ids*.
A tokenizer is the pair of functions

    encode: str -> list[int]        decode: list[int] -> str

with ``decode(encode(text)) == text`` for every text it claims to support.
This module builds three of them, from the simplest to the one GPT-2 uses:

* :class:`CharTokenizer`  -- one token per character (vocabulary = the characters seen).
* :class:`WordTokenizer`  -- one token per whitespace-separated word, plus special
  tokens ``<pad>``, ``<bos>``, ``<eos>``, ``<unk>`` for batching and unknown words.
* :class:`BPETokenizer`   -- byte-pair encoding: start from the 256 possible bytes
  and repeatedly *merge the most frequent adjacent pair* into a new token.
  Because every string is a sequence of UTF-8 bytes, any text -- even text
  with characters never seen in training -- round-trips exactly.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Sequence

import torch

__all__ = ["CharTokenizer", "WordTokenizer", "BPETokenizer", "DEFAULT_SPECIALS"]

# Special tokens, in the order that gives <pad>=0, <bos>=1, <eos>=2, <unk>=3.
# (The translation lesson relies on pad=0, bos=1, eos=2.)
DEFAULT_SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")


def _as_texts(corpus: str | Iterable[str], name: str = "corpus") -> list[str]:
    """Accept one string or an iterable of strings; always return a list of strings."""
    if isinstance(corpus, str):
        return [corpus]
    texts = list(corpus)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ValueError(f"{name}[{i}] is {type(t).__name__}, expected str")
    return texts


def _check_ids(ids: Sequence[int], vocab_size: int) -> list[int]:
    """Turn ids (list or 1-D tensor) into a list of ints in [0, vocab_size)."""
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1:
            raise ValueError(f"ids has shape {tuple(ids.shape)}, expected a 1-D sequence of token ids")
        ids = ids.tolist()
    out = []
    for i in ids:
        i = int(i)
        if not 0 <= i < vocab_size:
            raise ValueError(f"ids contains {i}, expected ids in [0, {vocab_size})")
        out.append(i)
    return out


# ----------------------------------------------------------------------------------------
# Characters
# ----------------------------------------------------------------------------------------
class CharTokenizer:
    """One token per character.

    The vocabulary is the sorted set of characters in ``text`` (or the given ``vocab``),
    so ids are stable: the same text always gives the same tokenizer.

    >>> tok = CharTokenizer("hello")
    >>> tok.vocab
    ['e', 'h', 'l', 'o']
    >>> tok.encode("hello")
    [1, 0, 2, 2, 3]
    >>> tok.decode([1, 0, 2, 2, 3])
    'hello'

    Characters outside the vocabulary raise ValueError, unless ``unk`` names a
    character of the vocabulary to use instead (then the round trip is lossy).
    """

    def __init__(self, text: str | None = None, vocab: Sequence[str] | None = None, unk: str | None = None):
        if (text is None) == (vocab is None):
            raise ValueError("give exactly one of text (a str to collect characters from) or vocab (a list of characters)")
        if text is not None:
            if not isinstance(text, str):
                raise ValueError(f"text is {type(text).__name__}, expected str")
            chars = sorted(set(text))
        else:
            chars = list(vocab)
            for c in chars:
                if not (isinstance(c, str) and len(c) == 1):
                    raise ValueError(f"vocab contains {c!r}, expected single characters")
            if len(set(chars)) != len(chars):
                raise ValueError("vocab contains duplicate characters")
        if unk is not None and unk not in chars:
            chars.append(unk)
        self.vocab: list[str] = chars
        self.stoi: dict[str, int] = {c: i for i, c in enumerate(chars)}  # string -> id
        self.itos: dict[int, str] = dict(enumerate(chars))  # id -> string
        self.unk = unk

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str) -> list[int]:
        """text -> [id of each character]."""
        ids = []
        for pos, c in enumerate(text):
            if c in self.stoi:
                ids.append(self.stoi[c])
            elif self.unk is not None:
                ids.append(self.stoi[self.unk])
            else:
                raise ValueError(
                    f"text has character {c!r} at position {pos}, which is not in the vocabulary "
                    f"of {self.vocab_size} characters (pass unk=... to map unknown characters)"
                )
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """[ids] -> text (concatenate the characters)."""
        return "".join(self.itos[i] for i in _check_ids(ids, self.vocab_size))

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


# ----------------------------------------------------------------------------------------
# Words
# ----------------------------------------------------------------------------------------
class WordTokenizer:
    """One token per word, where words are the pieces of ``text.split()``.

    Vocabulary = ``specials`` first (``<pad>``=0, ``<bos>``=1, ``<eos>``=2, ``<unk>``=3
    by default), then the words of the corpus, most frequent first, ties in
    alphabetical order (so the ids are deterministic). Words seen fewer than
    ``min_freq`` times are left out and encode to ``<unk>``.

    Decoding joins words with single spaces, so the round trip is exact for text
    whose words are known and separated by single spaces.
    """

    def __init__(
        self,
        corpus: str | Iterable[str],
        specials: Sequence[str] = DEFAULT_SPECIALS,
        min_freq: int = 1,
        lowercase: bool = False,
    ):
        texts = _as_texts(corpus)
        if len(set(specials)) != len(specials):
            raise ValueError(f"specials {tuple(specials)} contains duplicates")
        if min_freq < 1:
            raise ValueError(f"min_freq is {min_freq}, expected >= 1")
        self.lowercase = lowercase
        self.specials = tuple(specials)
        counts = Counter(w for t in texts for w in self.split(t))
        words = sorted((w for w, n in counts.items() if n >= min_freq and w not in self.specials),
                       key=lambda w: (-counts[w], w))
        self.vocab: list[str] = list(self.specials) + words
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(self.vocab)}
        self.itos: dict[int, str] = dict(enumerate(self.vocab))
        self.counts = counts

    # ids of the special tokens (None when that special is not in the vocabulary)
    @property
    def pad_id(self) -> int | None:
        return self.stoi.get("<pad>")

    @property
    def bos_id(self) -> int | None:
        return self.stoi.get("<bos>")

    @property
    def eos_id(self) -> int | None:
        return self.stoi.get("<eos>")

    @property
    def unk_id(self) -> int | None:
        return self.stoi.get("<unk>")

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __len__(self) -> int:
        return self.vocab_size

    def split(self, text: str) -> list[str]:
        """The word-splitting rule: whitespace (and lower-casing when asked)."""
        return (text.lower() if self.lowercase else text).split()

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        """text -> [<bos>] + [id of each word] + [<eos>]; unknown words -> <unk>."""
        ids = []
        for w in self.split(text):
            if w in self.stoi:
                ids.append(self.stoi[w])
            elif self.unk_id is not None:
                ids.append(self.unk_id)
            else:
                raise ValueError(f"text has word {w!r}, which is not in the vocabulary and there is no <unk> token")
        if add_bos:
            ids.insert(0, self._special_id("<bos>"))
        if add_eos:
            ids.append(self._special_id("<eos>"))
        return ids

    def decode(self, ids: Sequence[int], skip_specials: bool = True) -> str:
        """[ids] -> words joined by spaces. ``<pad>``, ``<bos>``, ``<eos>`` are dropped
        when ``skip_specials`` (``<unk>`` is kept, it stands for a real word)."""
        words = []
        for i in _check_ids(ids, self.vocab_size):
            w = self.itos[i]
            if skip_specials and w in self.specials and w != "<unk>":
                continue
            words.append(w)
        return " ".join(words)

    def encode_batch(
        self, texts: Sequence[str], add_bos: bool = False, add_eos: bool = False, max_len: int | None = None
    ) -> torch.Tensor:
        """Encode several texts and right-pad with ``<pad>`` into a LongTensor (B, T_max).

        ``max_len`` (optional) keeps only the first ``max_len`` ids of each row.
        """
        pad = self._special_id("<pad>")
        rows = [self.encode(t, add_bos=add_bos, add_eos=add_eos) for t in texts]
        if max_len is not None:
            rows = [r[:max_len] for r in rows]
        T = max((len(r) for r in rows), default=0)
        batch = torch.full((len(rows), T), pad, dtype=torch.long)  # (B, T)
        for b, r in enumerate(rows):
            batch[b, : len(r)] = torch.tensor(r, dtype=torch.long)
        return batch

    def _special_id(self, token: str) -> int:
        if token not in self.stoi:
            raise ValueError(f"this tokenizer has no {token} token (specials={self.specials})")
        return self.stoi[token]

    def __repr__(self) -> str:
        return f"WordTokenizer(vocab_size={self.vocab_size}, specials={self.specials})"


# ----------------------------------------------------------------------------------------
# Byte-pair encoding
# ----------------------------------------------------------------------------------------
# Before counting pairs, text is cut into chunks "optional whitespace + non-whitespace run"
# (and trailing whitespace), e.g. "the cat sat" -> ["the", " cat", " sat"]. Merges never
# cross a chunk boundary, so a token never glues the end of one word to the next word.
_CHUNK = re.compile(r"\s*\S+|\s+")


def pretokenize(text: str) -> list[str]:
    """Split text into chunks that BPE merges within: ``"".join(chunks) == text``."""
    return _CHUNK.findall(text)


def count_pairs(sequences: dict[tuple[int, ...], int]) -> Counter:
    """Count adjacent pairs: for each sequence (with its multiplicity), every (s[i], s[i+1])."""
    pairs: Counter = Counter()
    for seq, n in sequences.items():
        for a, b in zip(seq, seq[1:]):
            pairs[(a, b)] += n
    return pairs


def merge_pair(seq: Sequence[int], pair: tuple[int, int], new_id: int) -> tuple[int, ...]:
    """Replace every non-overlapping occurrence of ``pair`` in ``seq`` (left to right) by ``new_id``."""
    out = []
    i = 0
    while i < len(seq):
        if i + 1 < len(seq) and (seq[i], seq[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(seq[i])
            i += 1
    return tuple(out)


class BPETokenizer:
    """Byte-level byte-pair encoding (the idea behind GPT-2's tokenizer).

    Base vocabulary: the 256 byte values, so *every* string can be encoded
    (``text.encode("utf-8")``) and decoded exactly. Each learned merge
    ``(a, b) -> 256 + k`` adds one token, whose bytes are ``bytes(a) + bytes(b)``.

    Training (:meth:`train`) -- repeat ``n_merges`` times:

    1. count every adjacent pair of tokens in the corpus,
    2. take the most frequent pair; ties go to the pair that is smallest as a
       tuple of ids ``(a, b)`` (deterministic, no dependence on dict order),
    3. replace it everywhere by a new token id.

    Encoding applies the learned merges to new text, earliest-learned first,
    exactly as training would have.
    """

    def __init__(self, merges: Sequence[tuple[int, int]] = ()):
        self.merges: list[tuple[int, int]] = []  # merges[k] = (a, b) made token 256 + k
        self.ranks: dict[tuple[int, int], int] = {}  # pair -> k (its position in merges)
        self.token_bytes: list[bytes] = [bytes([b]) for b in range(256)]  # id -> its bytes
        self.history: list[tuple[tuple[int, int], int]] = []  # (pair, count) for each training step
        for pair in merges:
            self._add_merge(tuple(pair))

    def _add_merge(self, pair: tuple[int, int]) -> int:
        a, b = pair
        if not (0 <= a < self.vocab_size and 0 <= b < self.vocab_size):
            raise ValueError(f"merge {pair} refers to ids outside the vocabulary of {self.vocab_size}")
        new_id = self.vocab_size
        self.merges.append((a, b))
        self.ranks[(a, b)] = new_id - 256
        self.token_bytes.append(self.token_bytes[a] + self.token_bytes[b])
        return new_id

    @property
    def vocab_size(self) -> int:
        """256 bytes + one token per merge."""
        return len(self.token_bytes)

    def __len__(self) -> int:
        return self.vocab_size

    # ---- training ----------------------------------------------------------------------
    @classmethod
    def train(
        cls,
        corpus: str | Iterable[str],
        vocab_size: int | None = None,
        n_merges: int | None = None,
        min_frequency: int = 2,
        verbose: bool = False,
    ) -> "BPETokenizer":
        """Learn merges from ``corpus`` (a string or a list of strings).

        Give either ``vocab_size`` (>= 256; ``n_merges = vocab_size - 256``) or ``n_merges``.
        Training stops early when the most frequent pair occurs fewer than
        ``min_frequency`` times (merging a pair seen once compresses nothing).
        """
        if (vocab_size is None) == (n_merges is None):
            raise ValueError("give exactly one of vocab_size or n_merges")
        if vocab_size is not None:
            if vocab_size < 256:
                raise ValueError(f"vocab_size is {vocab_size}, expected >= 256 (the byte-level base vocabulary)")
            n_merges = vocab_size - 256
        if n_merges < 0:
            raise ValueError(f"n_merges is {n_merges}, expected >= 0")

        # Each distinct chunk once, with how often it occurs: {(byte, byte, ...): count}
        chunk_counts = Counter(c for t in _as_texts(corpus) for c in pretokenize(t))
        sequences = {tuple(c.encode("utf-8")): n for c, n in chunk_counts.items()}

        tok = cls()
        for step in range(n_merges):
            pairs = count_pairs(sequences)
            if not pairs:
                break
            # most frequent; ties -> smallest (a, b)
            best = min(pairs, key=lambda p: (-pairs[p], p))
            if pairs[best] < min_frequency:
                break
            new_id = tok._add_merge(best)
            tok.history.append((best, pairs[best]))
            sequences = {merge_pair(s, best, new_id): n for s, n in sequences.items()}
            if verbose:
                print(f"merge {step + 1}: {tok.token_bytes[best[0]]!r} + {tok.token_bytes[best[1]]!r}"
                      f" -> {new_id} {tok.token_bytes[new_id]!r}  (seen {pairs[best]} times)")
        return tok

    # ---- encoding / decoding ----------------------------------------------------------
    def _encode_chunk(self, chunk: str) -> list[int]:
        seq = tuple(chunk.encode("utf-8"))
        while len(seq) >= 2:
            # the pair here that was learned first (lowest rank); stop when none was learned
            pair = min(zip(seq, seq[1:]), key=lambda p: self.ranks.get(p, float("inf")))
            if pair not in self.ranks:
                break
            seq = merge_pair(seq, pair, 256 + self.ranks[pair])
        return list(seq)

    def encode(self, text: str) -> list[int]:
        """text -> token ids (any text: unseen characters fall back to their UTF-8 bytes)."""
        if not isinstance(text, str):
            raise ValueError(f"text is {type(text).__name__}, expected str")
        return [i for chunk in pretokenize(text) for i in self._encode_chunk(chunk)]

    def decode(self, ids: Sequence[int], errors: str = "replace") -> str:
        """token ids -> text: concatenate each token's bytes, then decode UTF-8.

        A slice of ids can end in the middle of a multi-byte character; ``errors="replace"``
        shows such bytes as U+FFFD instead of raising.
        """
        data = b"".join(self.token_bytes[i] for i in _check_ids(ids, self.vocab_size))
        return data.decode("utf-8", errors=errors)

    def token_str(self, i: int) -> str:
        """A printable form of one token (bytes that are not valid UTF-8 on their own are escaped)."""
        return self.token_bytes[i].decode("utf-8", errors="backslashreplace")

    def tokens(self, text: str) -> list[str]:
        """The pieces ``text`` is cut into, e.g. ``['the', ' cat', ' s', 'at']``."""
        return [self.token_str(i) for i in self.encode(text)]

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)})"
