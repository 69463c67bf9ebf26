"""Datasets: deterministic, offline, fast, and with the structure their docstrings promise."""

import hashlib
import inspect
import json
import re
from collections import Counter
from pathlib import Path

import pytest
import torch

from course_lib import data

SHARED_SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"

GENERATORS = {
    "toy_corpus": lambda: data.toy_corpus(),
    "mlm_corpus": lambda: data.mlm_corpus(),
    "mole_sentences": lambda: data.mole_sentences(),
    "sentiment_dataset": lambda: data.sentiment_dataset(),
    "translation_pairs": lambda: data.translation_pairs(seed=3),
    "translation_tokenizers": lambda: data.translation_tokenizers(),
    "char_corpus": lambda: data.char_corpus(),
    "sort_task": lambda: data.sort_task(10_000, 16, 50),
}


@pytest.mark.parametrize("name", list(GENERATORS))
def test_generators_are_deterministic(name):
    """The same call gives the same data (speed is measured in bench/, not asserted here)."""
    first = GENERATORS[name]()
    second = GENERATORS[name]()
    if name == "translation_tokenizers":
        assert [t.vocab for t in first] == [t.vocab for t in second]
    elif name == "sort_task":
        assert all(torch.equal(a, b) for a, b in zip(first, second))
    else:
        assert first == second
    assert len(first) > 0


# ---------------------------------------------------------------------------------------
# No leaks: every dataset is free of duplicates, every split the course makes is disjoint
# ---------------------------------------------------------------------------------------
def _list_datasets():
    """Every public function of course_lib.data that returns a list of items when called with its
    defaults (and repeats=1 where it repeats on purpose): found by introspection, so a dataset added
    later is covered without editing this test."""
    found = {}
    for name in data.__all__:
        fn = getattr(data, name)
        if not inspect.isfunction(fn) or name in ("unique", "train_test_split", "tiny_shakespeare"):
            continue
        sig = inspect.signature(fn)
        if any(p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
               for p in sig.parameters.values()):
            continue  # needs arguments: not a dataset
        kwargs = {"repeats": 1} if "repeats" in sig.parameters else {}
        out = fn(**kwargs)
        if isinstance(out, list):
            found[name] = (fn, kwargs)
    return found


DATASETS = _list_datasets()


def test_the_dataset_discovery_finds_the_course_datasets():
    assert {"toy_corpus", "mlm_corpus", "mole_sentences", "sentiment_dataset", "translation_examples",
            "translation_pairs"} <= set(DATASETS)


@pytest.mark.parametrize("name", sorted(DATASETS))
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_every_dataset_item_is_distinct(name, seed):
    fn, kwargs = DATASETS[name]
    if "seed" in inspect.signature(fn).parameters:
        kwargs = {**kwargs, "seed": seed}
    items = fn(**kwargs)
    duplicates = [item for item, n in Counter(items).items() if n > 1]
    assert not duplicates, f"{name}: {len(duplicates)} items occur more than once, e.g. {duplicates[:3]}"


def test_sentiment_reviews_are_distinct_for_large_n_and_the_limit_is_checked():
    big = data.sentiment_dataset(n=5000, seed=2)
    assert len({text for text, _ in big}) == 5000
    with pytest.raises(ValueError, match="only 18552 different reviews"):
        data.sentiment_dataset(n=20_000)


def test_train_test_split_drops_duplicates_before_splitting():
    items = ["a", "b", "a", "c", "b", "d", "a", "e", "f", "g"] * 3
    for seed in range(20):
        train, test = data.train_test_split(items, test_fraction=0.3, seed=seed)
        assert not set(train) & set(test)
        assert sorted(train + test) == sorted(set(items))  # each distinct item exactly once
    assert data.unique(["b", "a", "b", "c"]) == ["b", "a", "c"]


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_splitting_any_dataset_never_leaks(name):
    fn, kwargs = DATASETS[name]
    items = fn(**kwargs)
    for fraction in (0.1, 0.3):
        train, test = data.train_test_split(items * 2, test_fraction=fraction, seed=0)  # even with repeats
        assert test and not set(train) & set(test)


def _first_text(item):
    """The text that identifies an item: a str itself, the first str of a tuple, a dataclass's first str."""
    if isinstance(item, str):
        return item
    values = list(item) if isinstance(item, tuple) else list(vars(item).values())
    return next(v for v in values if isinstance(v, str))


# Cells tagged `train` run (a split may sit in one: the grader skips them, this test must not); the run stops
# at the notebook's last split, before the demos train anything.
SKIP_TAGS = {"network", "nbval-skip", "slow"}


def _notebooks_that_split():
    """(notebook, index of its last cell that calls train_test_split): every split the course makes."""
    found = []
    for path in sorted((Path(__file__).resolve().parents[1] / "solutions").glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        last = [i for i, c in enumerate(cells) if c["cell_type"] == "code"
                and re.search(r"\btrain_test_split\(", "".join(c["source"]))]
        if last:
            found.append(pytest.param(path, last[-1], id=path.stem))
    return found


NOTEBOOK_SPLITS = _notebooks_that_split()


def test_the_notebook_split_discovery_finds_units_08_and_10():
    ids = {p.id for p in NOTEBOOK_SPLITS}
    assert {"08_encoder_bert", "10_encoder_decoder_t5"} <= ids


@pytest.mark.parametrize("path, last_cell", NOTEBOOK_SPLITS)
def test_no_notebook_split_puts_a_held_out_item_into_training(path, last_cell, monkeypatch, tmp_path):
    """Run the notebook's code up to its last split (no demo training), record every split it makes,
    then check that no held-out item (nor its text) is in any training list of the notebook."""
    import matplotlib

    matplotlib.use("Agg")
    splits = []
    real_split = data.train_test_split

    def recording_split(*args, **kwargs):
        train, test = real_split(*args, **kwargs)
        splits.append((train, test))
        return train, test

    monkeypatch.setattr(data, "train_test_split", recording_split)
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__main__"}
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for cell in cells[: last_cell + 1]:
            if cell["cell_type"] != "code" or SKIP_TAGS & set(cell.get("metadata", {}).get("tags", [])):
                continue
            exec(compile("".join(cell["source"]), f"{path.name}", "exec"), namespace)
    import matplotlib.pyplot as plt

    plt.close("all")
    assert splits, f"{path.name} calls train_test_split but no call was recorded"
    training_lists = {k: v for k, v in namespace.items()
                      if isinstance(v, list) and v and re.search(r"(^|_)(train|fit|pre)(_|$)", k)}
    for train, test in splits:
        assert test, "an empty held-out set proves nothing"
        assert not set(map(repr, train)) & set(map(repr, test))
        # the notebook's training lists are found, and none of them holds a held-out item or its text
        holders = [k for k, v in training_lists.items() if set(map(repr, train)) <= set(map(repr, v))]
        assert holders, f"no list named like *train* / *fit* in {path.name} holds the training split"
        held_texts = {_first_text(t) for t in test}
        for name, items in training_lists.items():
            leaked = held_texts & {_first_text(t) for t in items}
            assert not leaked, f"{path.name}: {len(leaked)} held-out items are in `{name}`, e.g. {sorted(leaked)[:3]}"


# ---------------------------------------------------------------------------------------
# toy corpus
# ---------------------------------------------------------------------------------------
def _swap_gender(sentence: str) -> str:
    swap = {}
    for male, female, _ in data._PERSON_PAIRS:
        swap[male], swap[female] = female, male
    swap.update({"his": "her", "her": "his", "he": "she", "she": "he", "himself": "herself", "herself": "himself"})
    return " ".join(swap.get(w, w) for w in sentence.split())


def test_toy_corpus_seed_changes_only_the_order():
    a, b = data.toy_corpus(seed=0), data.toy_corpus(seed=1)
    assert a != b and sorted(a) == sorted(b)
    assert len(data.toy_corpus(repeats=3)) == 3 * len(a)


def test_toy_corpus_contains_every_analogy_word():
    words = {w for s in data.toy_corpus() for w in s.split()}
    for analogy in data.ANALOGIES:
        assert set(analogy) <= words


def test_toy_corpus_gendered_words_have_mirror_image_contexts():
    """Except for the gender words, a man's sentences are exactly a woman's (so that the
    only difference between 'king' and 'queen' is the gender direction)."""
    people = Counter(s for s in data.toy_corpus() if any(w in s.split() for p in data._PERSON_PAIRS for w in p[:2]))
    grammar_gender_only = {"the {w} shaved his beard", "the {w} brushed her hair"}
    mirrored = Counter(_swap_gender(s) for s in people)
    # the only sentences without a mirror image are the two gender-specific grooming templates
    unmatched = people - mirrored
    assert {re.sub(r"^the \w+", "the {w}", s) for s in unmatched} == grammar_gender_only
    assert sum(unmatched.values()) == len(data._PERSON_PAIRS) * 2


def test_toy_corpus_is_lower_case_words():
    for s in data.toy_corpus():
        assert s == s.lower() and re.fullmatch(r"[a-z' ]+", s), s


# ---------------------------------------------------------------------------------------
# mole / MLM
# ---------------------------------------------------------------------------------------
def test_mole_sentences_cover_four_senses():
    pairs = data.mole_sentences()
    senses = Counter(sense for _, sense in pairs)
    assert set(senses) == set(data.MOLE_SENSES) and set(senses.values()) == {5}
    assert all("mole" in s.split() for s, _ in pairs)
    assert data.mole_sentences(seed=1) != pairs and sorted(data.mole_sentences(seed=1)) == sorted(pairs)


def test_mlm_corpus_contains_the_toy_corpus_and_every_sense_context():
    corpus = data.mlm_corpus(repeats=1)
    assert set(data.toy_corpus()) <= set(corpus)
    assert {s for s, _ in data.mole_sentences()} <= set(corpus)
    # the same contexts also appear with ordinary words, so "mole" must be read from context
    assert "the rabbit dug a tunnel under the garden" in corpus
    assert "one gram of water weighs a fixed amount" in corpus
    assert len(data.mlm_corpus(repeats=2)) == 2 * len(corpus)


# ---------------------------------------------------------------------------------------
# sentiment
# ---------------------------------------------------------------------------------------
def _rule_label(sentence: str) -> int:
    """An independent labeller: the clause after 'but' decides; 'not' flips it."""
    clause = sentence.split(" but ")[-1].split()
    positive = set(data._POSITIVE) | {"loved", "liked", "enjoyed", "love", "like", "enjoy"}
    negative = set(data._NEGATIVE) | {"hated", "disliked", "hate", "dislike"}
    polarity = [1 for w in clause if w in positive] + [0 for w in clause if w in negative]
    assert len(polarity) == 1, sentence
    return 1 - polarity[0] if "not" in clause else polarity[0]


def test_sentiment_labels_follow_the_documented_rules():
    dataset = data.sentiment_dataset(n=600, seed=4)
    assert len(dataset) == 600
    for sentence, label in dataset:
        assert label in (0, 1)
        assert _rule_label(sentence) == label, sentence


def test_sentiment_is_balanced_and_uses_negation_in_both_classes():
    dataset = data.sentiment_dataset(n=1000)
    labels = Counter(label for _, label in dataset)
    assert labels[0] == labels[1] == 500
    negated = Counter(label for s, label in dataset if " not " in f" {s} ")
    assert negated[0] > 20 and negated[1] > 20
    assert any(" but " in s for s, _ in dataset)
    assert data.sentiment_dataset(seed=1) != dataset


# ---------------------------------------------------------------------------------------
# algorithmic tasks
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", [data.copy_task, data.reverse_task, data.sort_task])
def test_tasks_shapes_ranges_and_seeds(task):
    x, y = task(50, 12, 20, seed=1, low=3)
    assert x.shape == y.shape == (50, 12) and x.dtype == y.dtype == torch.long
    assert x.min() >= 3 and x.max() < 20
    x2, _ = task(50, 12, 20, seed=1, low=3)
    x3, _ = task(50, 12, 20, seed=2, low=3)
    assert torch.equal(x, x2) and not torch.equal(x, x3)
    # targets are a rearrangement of the inputs
    assert torch.equal(x.sort(-1).values, y.sort(-1).values)


def test_task_targets():
    x, y = data.copy_task(8, 5, 9)
    assert torch.equal(x, y)
    x, y = data.reverse_task(8, 5, 9)
    assert y.tolist() == [row[::-1] for row in x.tolist()]
    x, y = data.sort_task(8, 5, 9)
    assert y.tolist() == [sorted(row) for row in x.tolist()]


def test_tasks_validate_arguments():
    with pytest.raises(ValueError, match="length is 0"):
        data.copy_task(3, 0, 5)
    with pytest.raises(ValueError, match="low=5 and vocab_size=5"):
        data.sort_task(3, 4, 5, low=5)


def test_lm_format_masks_the_prompt():
    x, y = data.sort_task(4, 6, 10)
    inp, tgt = data.lm_format(x, y)
    assert inp.shape == tgt.shape == (4, 11)
    assert torch.equal(inp[:, :6], x) and torch.equal(inp[:, 6:], y[:, :-1])
    assert (tgt[:, :5] == -100).all()
    assert torch.equal(tgt[:, 5:], y)  # every target token is predicted, from the last input on
    with pytest.raises(ValueError, match="same number of rows"):
        data.lm_format(x, y[:2])


# ---------------------------------------------------------------------------------------
# translation
# ---------------------------------------------------------------------------------------
def test_translation_examples_from_the_brief():
    pairs = dict(data.translation_pairs())
    assert pairs["the red cat"] == "el gato rojo"
    assert pairs["the white house"] == "la casa blanca"
    assert pairs["let's go"] == "vamos"
    assert pairs["the red cats"] == "los gatos rojos"
    assert pairs["some white houses are new"] == "unas casas blancas son nuevas"
    assert pairs["i see the green apples"] == "veo las manzanas verdes"


def test_translation_is_a_function_and_deterministic():
    examples = data.translation_examples()
    english = [e.english for e in examples]
    assert len(english) == len(set(english)) == len(examples)
    assert data.translation_pairs(100, seed=5) == data.translation_pairs(100, seed=5)
    assert data.translation_pairs(100, seed=5) != data.translation_pairs(100, seed=6)
    assert set(data.translation_pairs(seed=1)) == {(e.english, e.spanish) for e in examples}
    with pytest.raises(ValueError, match="n is -1"):
        data.translation_pairs(-1)


def test_translation_adjectives_follow_the_noun_and_agree():
    noun_gender = {}
    for sg, (es_sg, es_pl, gender, _) in data._NOUNS.items():
        noun_gender[es_sg], noun_gender[es_pl] = (gender, "sg"), (gender, "pl")
    form_to_agreement = {}
    for forms in data._ADJECTIVES.values():
        for agreement, form in forms.items():
            form_to_agreement.setdefault(form, set()).add(agreement)
    checked = 0
    for e in data.translation_examples():
        en, es = e.english.split(), e.spanish.split()
        for i, j in e.alignment:
            if en[i] in data._ADJECTIVES:
                noun = es[j - 1]  # the word before the adjective is its noun
                assert noun in noun_gender, (e, noun)
                assert noun_gender[noun] in form_to_agreement[es[j]], e
                checked += 1
    assert checked > 2000


def test_translation_alignments_are_valid():
    for e in data.translation_examples():
        n_en, n_es = len(e.english.split()), len(e.spanish.split())
        assert {i for i, _ in e.alignment} == set(range(n_en)), e
        assert {j for _, j in e.alignment} == set(range(n_es)), e
        m = data.alignment_matrix(e)
        assert m.shape == (n_es, n_en) and m.sum() == len(e.alignment)
    example = next(e for e in data.translation_examples() if e.english == "the red cat")
    assert data.alignment_matrix(example).tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 0]]


def test_translation_tokenizers_and_batches():
    src_tok, tgt_tok = data.translation_tokenizers()
    for tok in (src_tok, tgt_tok):
        assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
    pairs = data.translation_pairs(16, seed=0)
    src, tgt_in, tgt_out = data.translation_batch(pairs, src_tok, tgt_tok)
    assert src.shape[0] == tgt_in.shape[0] == 16 and tgt_in.shape == tgt_out.shape
    assert (tgt_in[:, 0] == 1).all()
    for b, (en, es) in enumerate(pairs):
        assert src_tok.decode(src[b]) == en and tgt_tok.decode(tgt_out[b]) == es
        n = len(es.split())
        assert tgt_out[b, n] == 2 and torch.equal(tgt_in[b, 1:n + 1], tgt_out[b, :n])
    # no unknown words anywhere in the grammar
    for en, es in data.translation_pairs():
        assert src_tok.unk_id not in src_tok.encode(en) and tgt_tok.unk_id not in tgt_tok.encode(es)


def test_train_test_split_is_a_partition():
    items = list(range(103))
    train, test = data.train_test_split(items, test_fraction=0.2, seed=1)
    assert len(test) == 21 and sorted(train + test) == items
    assert data.train_test_split(items, 0.2, seed=1) == (train, test)
    with pytest.raises(ValueError, match="test_fraction is 1.5"):
        data.train_test_split(items, 1.5)


# ---------------------------------------------------------------------------------------
# character corpus
# ---------------------------------------------------------------------------------------
def test_char_corpus_is_a_play_of_the_requested_size():
    text = data.char_corpus()
    assert 200_000 <= len(text) < 205_000
    assert text.startswith("ACT 1. SCENE 1.") and text.isascii()
    assert re.search(r"\n\n[A-Z]+:\n[A-Z]", text)
    assert len(set(text)) < 80
    small = data.char_corpus(n_chars=5_000, seed=1)
    assert 5_000 <= len(small) < 8_000 and small != data.char_corpus(n_chars=5_000, seed=2)


# ---------------------------------------------------------------------------------------
# Tiny Shakespeare: checksum and cache, with local file:// URLs only (never the network)
# ---------------------------------------------------------------------------------------
def test_tiny_shakespeare_constants():
    assert data.TINY_SHAKESPEARE_URL.startswith("https://raw.githubusercontent.com/karpathy/char-rnn/")
    if not SHARED_SHAKESPEARE.exists():
        pytest.skip("../shared/data/tinyshakespeare.txt is not here")
    assert hashlib.sha256(SHARED_SHAKESPEARE.read_bytes()).hexdigest() == data.TINY_SHAKESPEARE_SHA256


def test_tiny_shakespeare_downloads_verifies_and_caches(tmp_path):
    source = tmp_path / "remote.txt"
    source.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n", encoding="utf-8")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    text = data.tiny_shakespeare(cache_dir=cache, url=source.as_uri(), sha256=digest)
    assert text.startswith("First Citizen:")
    assert (cache / "tinyshakespeare.txt").read_bytes() == source.read_bytes()
    # second call: served from the cache, the (now broken) URL is never opened
    source.unlink()
    assert data.tiny_shakespeare(cache_dir=cache, url=source.as_uri(), sha256=digest) == text


def test_tiny_shakespeare_rejects_a_bad_checksum_and_does_not_cache(tmp_path):
    source = tmp_path / "remote.txt"
    source.write_text("not shakespeare", encoding="utf-8")
    with pytest.raises(ValueError, match="sha256"):
        data.tiny_shakespeare(cache_dir=tmp_path / "cache", url=source.as_uri(), sha256="0" * 64)
    assert not (tmp_path / "cache" / "tinyshakespeare.txt").exists()


def test_tiny_shakespeare_offline_message(tmp_path):
    missing = (tmp_path / "nowhere.txt").as_uri()
    with pytest.raises(ConnectionError, match="offline") as info:
        data.tiny_shakespeare(cache_dir=tmp_path / "cache", url=missing)
    assert "char_corpus" in str(info.value) and "tinyshakespeare.txt" in str(info.value)


def test_tiny_shakespeare_replaces_a_corrupt_cache(tmp_path):
    source = tmp_path / "remote.txt"
    source.write_text("good text", encoding="utf-8")
    digest = hashlib.sha256(b"good text").hexdigest()
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "tinyshakespeare.txt").write_text("corrupt", encoding="utf-8")
    assert data.tiny_shakespeare(cache_dir=cache, url=source.as_uri(), sha256=digest) == "good text"
    assert (cache / "tinyshakespeare.txt").read_text(encoding="utf-8") == "good text"
