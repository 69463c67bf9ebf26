"""Tokenizers: exact round trips, deterministic vocabularies, and BPE merges checked against
an independent, differently written trainer."""

from collections import defaultdict

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib.data import char_corpus
from course_lib.tokens import BPETokenizer, CharTokenizer, WordTokenizer, count_pairs, merge_pair, pretokenize

CORPUS = (
    "the cat sat on the mat. the dog sat on the log. "
    "a cat and a dog met on a mat, and the cat sat by the dog. "
    "then the other cat saw the dog and ran to the mat; the dog ran after the cat. "
    "there is a theory that the cat and the dog are rather fond of the mat and the log. "
    "Zürich is not in the corpus, nor is 猫 or 🙂."
)
BPE = BPETokenizer.train(CORPUS, n_merges=40)  # shared by the hypothesis test (trained once)


# ---------------------------------------------------------------------------------------
# CharTokenizer
# ---------------------------------------------------------------------------------------
def test_char_vocab_is_sorted_set_of_characters():
    tok = CharTokenizer("hello world")
    assert tok.vocab == sorted(set("hello world"))
    assert tok.vocab_size == len(set("hello world")) == len(tok)
    assert tok.encode("hello") == [tok.vocab.index(c) for c in "hello"]


@given(st.text(min_size=1, max_size=200))
@settings(max_examples=60, deadline=None)
def test_char_round_trip(text):
    tok = CharTokenizer(text)
    assert tok.decode(tok.encode(text)) == text
    # any text over the same characters round-trips too
    shuffled = text[::-1]
    assert tok.decode(tok.encode(shuffled)) == shuffled


def test_char_unknown_character_is_a_clear_error():
    tok = CharTokenizer("abc")
    with pytest.raises(ValueError, match="'z'.*position 1"):
        tok.encode("az")


def test_char_unk_replaces_unknown_characters():
    tok = CharTokenizer("abc", unk="?")
    assert tok.decode(tok.encode("abz")) == "ab?"


def test_char_from_vocab_and_decode_checks_range():
    tok = CharTokenizer(vocab=["x", "y"])
    assert tok.encode("yx") == [1, 0]
    assert tok.decode(torch.tensor([1, 0])) == "yx"
    with pytest.raises(ValueError, match="ids contains 5"):
        tok.decode([5])
    with pytest.raises(ValueError, match="exactly one"):
        CharTokenizer("ab", vocab=["a"])


# ---------------------------------------------------------------------------------------
# WordTokenizer
# ---------------------------------------------------------------------------------------
def test_word_specials_come_first_with_fixed_ids():
    tok = WordTokenizer(["the cat sat", "the dog"])
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (0, 1, 2, 3)
    # then by frequency ("the" twice), ties alphabetically
    assert tok.vocab[4:] == ["the", "cat", "dog", "sat"]


def test_word_encode_decode_with_bos_eos_and_unknown_words():
    tok = WordTokenizer(["the cat sat", "the dog"])
    ids = tok.encode("the bird sat", add_bos=True, add_eos=True)
    assert ids == [1, tok.stoi["the"], 3, tok.stoi["sat"], 2]
    assert tok.decode(ids) == "the <unk> sat"
    assert tok.decode(ids, skip_specials=False) == "<bos> the <unk> sat <eos>"


@given(st.lists(st.sampled_from(["the", "cat", "sat", "on", "mat", "a", "dog"]), min_size=0, max_size=30))
@settings(max_examples=60, deadline=None)
def test_word_round_trip_of_known_words(words):
    tok = WordTokenizer(["the cat sat on the mat", "a dog"])
    text = " ".join(words)
    assert tok.decode(tok.encode(text)) == text


def test_word_encode_batch_pads_on_the_right():
    tok = WordTokenizer(["a b c"])
    batch = tok.encode_batch(["a b c", "b"], add_bos=True, add_eos=True)
    assert batch.dtype == torch.long and batch.shape == (2, 5)
    assert batch[1].tolist() == [tok.bos_id, tok.stoi["b"], tok.eos_id, tok.pad_id, tok.pad_id]
    assert tok.encode_batch(["a b c"], max_len=2).shape == (1, 2)


def test_word_min_freq_and_no_unk():
    tok = WordTokenizer(["a a b"], min_freq=2)
    assert "b" not in tok.stoi and tok.encode("b") == [tok.unk_id]
    plain = WordTokenizer(["a b"], specials=())
    assert plain.vocab == ["a", "b"] and plain.pad_id is None
    with pytest.raises(ValueError, match="no <unk>"):
        plain.encode("c")
    with pytest.raises(ValueError, match="no <bos>"):
        plain.encode("a", add_bos=True)


# ---------------------------------------------------------------------------------------
# BPE
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bpe():
    return BPE


def test_bpe_base_vocabulary_is_256_bytes():
    tok = BPETokenizer()
    assert tok.vocab_size == 256 and tok.merges == []
    text = "héllo 🙂"
    assert tok.encode(text) == list(text.encode("utf-8"))


@given(st.text(max_size=300))
@settings(max_examples=150, deadline=None)
def test_bpe_round_trip_on_any_unseen_text(text):
    tok = BPE
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


def test_bpe_vocabulary_grows_by_one_per_merge():
    for n in [0, 1, 5, 17, 30]:
        tok = BPETokenizer.train(CORPUS, n_merges=n)
        assert len(tok.merges) == n
        assert tok.vocab_size == 256 + n
        for k, (a, b) in enumerate(tok.merges):
            assert tok.token_bytes[256 + k] == tok.token_bytes[a] + tok.token_bytes[b]
    assert BPETokenizer.train(CORPUS, vocab_size=270).vocab_size == 270


def test_bpe_wikipedia_example():
    # https://en.wikipedia.org/wiki/Byte_pair_encoding: aaabdaaabac -> Z=aa, Y=ab, X=ZY
    tok = BPETokenizer.train("aaabdaaabac", n_merges=3)
    a, b = ord("a"), ord("b")
    assert tok.merges == [(a, a), (a, b), (256, 257)]
    assert [tok.token_str(i) for i in tok.encode("aaabdaaabac")] == ["aaab", "d", "aaab", "a", "c"]


def _reference_bpe_merges(text: str, n_merges: int) -> list[tuple[int, int]]:
    """An independent trainer, written differently: it splits on single spaces by hand,
    keeps every word occurrence as its own list (no counting of distinct words), counts
    pairs with a defaultdict and merges by rebuilding lists with an explicit index."""
    words = text.split(" ")
    chunks = [words[0]] + [" " + w for w in words[1:]]
    seqs = [list(c.encode("utf-8")) for c in chunks]
    merges = []
    next_id = 256
    for _ in range(n_merges):
        counts = defaultdict(int)
        for s in seqs:
            for k in range(len(s) - 1):
                counts[(s[k], s[k + 1])] += 1
        if not counts:
            break
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0][0], item[0][1]))
        (best, n) = ranked[0]
        if n < 2:
            break
        merges.append(best)
        new_seqs = []
        for s in seqs:
            out, k = [], 0
            while k < len(s):
                if k < len(s) - 1 and s[k] == best[0] and s[k + 1] == best[1]:
                    out.append(next_id)
                    k += 2
                else:
                    out.append(s[k])
                    k += 1
            new_seqs.append(out)
        seqs = new_seqs
        next_id += 1
    return merges


@pytest.mark.parametrize("text, n_merges", [
    (CORPUS, 25),
    (char_corpus(n_chars=4000), 80),
])
def test_bpe_merges_match_an_independent_counting(text, n_merges):
    text = " ".join(text.split())  # single spaces only, as the reference splitter expects
    tok = BPETokenizer.train(text, n_merges=n_merges)
    assert len(tok.merges) == n_merges  # the corpus really supports that many merges
    assert tok.merges == _reference_bpe_merges(text, n_merges)


def test_bpe_history_counts_and_first_merge():
    text = "the the the cat"
    tok = BPETokenizer.train(text, n_merges=10)
    # "the", " the", " the", " cat": most frequent pair is ('h','e') x3 (tie with ('t','h') x3 -> smaller ids win)
    assert tok.merges[0] == (ord("h"), ord("e"))
    assert tok.history[0] == ((ord("h"), ord("e")), 3)
    assert all(count >= 2 for _, count in tok.history)


def test_bpe_merges_never_cross_chunk_boundaries(bpe):
    for k in range(256, bpe.vocab_size):
        piece = bpe.token_bytes[k].decode("utf-8", errors="ignore")
        assert not (piece.strip() and piece.rstrip() != piece), f"token {piece!r} ends in whitespace after text"
    assert "".join(pretokenize(CORPUS)) == CORPUS


def test_bpe_compresses_its_training_text(bpe):
    assert len(bpe.encode(CORPUS)) < 0.75 * len(CORPUS.encode("utf-8"))


def test_bpe_encode_matches_applying_merges_in_training_order(bpe):
    """Encoding picks the earliest-learned pair each time; that equals replaying every merge in order."""
    for text in ["the cat sat on the log", "a dog and a cat", "Zürich 🙂 mat"]:
        expected = []
        for chunk in pretokenize(text):
            seq = tuple(chunk.encode("utf-8"))
            for k, pair in enumerate(bpe.merges):
                seq = merge_pair(seq, pair, 256 + k)
            expected += list(seq)
        assert bpe.encode(text) == expected


def test_bpe_helpers_and_partial_utf8():
    assert count_pairs({(1, 2, 1, 2): 3}) == {(1, 2): 6, (2, 1): 3}
    assert merge_pair((1, 1, 1), (1, 1), 9) == (9, 1)
    tok = BPETokenizer()
    ids = tok.encode("🙂")
    assert tok.decode(ids[:2]) == "\ufffd"  # half a character: replaced, not an exception
    assert BPETokenizer(merges=[(104, 105)]).encode("hi") == [256]


def test_bpe_is_deterministic_and_validates_arguments():
    assert BPETokenizer.train(CORPUS, n_merges=25).merges == BPETokenizer.train([CORPUS], n_merges=25).merges
    with pytest.raises(ValueError, match="exactly one"):
        BPETokenizer.train(CORPUS)
    with pytest.raises(ValueError, match="vocab_size is 100"):
        BPETokenizer.train(CORPUS, vocab_size=100)
    with pytest.raises(ValueError, match="ids contains 300"):
        BPETokenizer().decode([300])
