"""Datasets the course makes itself: small, deterministic, offline.

Every generator here is a plain Python function of a ``seed`` (and a size): the
same call always returns the same data, no file or network is touched, and each
takes well under a second. The structure of every dataset is known, so a lesson
can say in advance what a model *should* learn from it.

=========================  ==========================================================
function                   used in
=========================  ==========================================================
toy_corpus                 01 word embeddings (king - man + woman ~ queen), 08 BERT
mlm_corpus, mole_sentences 08 BERT: masked language modelling, contextual embeddings
sentiment_dataset          08 BERT: a tiny classifier
copy/reverse/sort_task     03-10 algorithmic sequence tasks; lm_format for GPT
translation_*              10 encoder-decoder: a toy English -> Spanish grammar
char_corpus                09 character-level GPT (built-in text)
tiny_shakespeare           09 optional: the real thing (download + sha256 + cache)
=========================  ==========================================================
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from course_lib.tokens import WordTokenizer

__all__ = [
    "toy_corpus", "ANALOGIES",
    "mole_sentences", "mlm_corpus", "MOLE_SENSES",
    "sentiment_dataset",
    "copy_task", "reverse_task", "sort_task", "lm_format",
    "TranslationExample", "translation_examples", "translation_pairs", "translation_tokenizers",
    "translation_batch", "alignment_matrix", "train_test_split", "unique",
    "char_corpus",
    "tiny_shakespeare", "TINY_SHAKESPEARE_URL", "TINY_SHAKESPEARE_SHA256",
]


def _check_positive(name: str, value: int, minimum: int = 1) -> None:
    if not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} is {value!r}, expected an int >= {minimum}")


def unique(items: Sequence) -> list:
    """The distinct items of ``items``, each once, in the order of their first appearance.

    >>> unique(["b", "a", "b", "c", "a"])
    ['b', 'a', 'c']
    """
    return list(dict.fromkeys(items))


def train_test_split(items: Sequence, test_fraction: float = 0.1, seed: int = 0) -> tuple[list, list]:
    """Drop duplicates, shuffle with ``seed`` and split off the last ``test_fraction`` of the items.

    Returns ``(train, test)``. Duplicates go first (:func:`unique`), so that a held-out item can
    never appear in the training list as well: the two lists are disjoint *by value* and together
    hold every distinct item once. (Items must be hashable: strings, tuples, frozen dataclasses.)
    """
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction is {test_fraction}, expected a number in [0, 1]")
    items = unique(items)
    random.Random(seed).shuffle(items)
    n_test = round(len(items) * test_fraction)
    return items[: len(items) - n_test], items[len(items) - n_test:]


# =========================================================================================
# 1. A toy corpus with known structure (word embeddings, BERT)
# =========================================================================================
# Every person word has a gender and one or two other attributes. Sentences are built
# from templates; each template talks about ONE attribute value. So the contexts of
# "king" are: (royal contexts) + (adult contexts) + (male contexts), and
#     king - man + woman
#   = [royal + adult + male] - [common + adult + male] + [common + adult + female]
#   = [royal + adult + female] = queen.
# The word vectors can only learn this from the contexts: nothing else tells them.
_PERSON_PAIRS = [  # (male, female, attributes shared by the pair)
    ("king", "queen", {"status": "royal", "age": "adult"}),
    ("prince", "princess", {"status": "royal", "age": "young"}),
    ("man", "woman", {"status": "common", "age": "adult"}),
    ("boy", "girl", {"status": "common", "age": "young"}),
    ("father", "mother", {"family": "parent"}),
    ("uncle", "aunt", {"family": "parent_sibling"}),
    ("brother", "sister", {"family": "sibling"}),
    ("son", "daughter", {"family": "child"}),
    ("husband", "wife", {"family": "spouse"}),
]

# {w} is the person word, {his} becomes "his" or "her".
_PERSON_TEMPLATES = {
    ("status", "royal"): [
        "the {w} lived in the palace with {his} servants",
        "the {w} wore {his} golden crown",
        "the {w} sat on the royal throne",
        "the {w} waved to {his} loyal subjects",
        "the {w} rode in the royal carriage",
    ],
    ("status", "common"): [
        "the {w} lived in a small house",
        "the {w} bought bread at the market",
        "the {w} waited for the bus",
        "the {w} paid {his} rent",
        "the {w} walked home from the shop",
    ],
    ("age", "adult"): [
        "the {w} went to work early",
        "the {w} drove {his} car",
        "the {w} read the newspaper",
        "the {w} signed the contract",
        "the {w} voted in the election",
    ],
    ("age", "young"): [
        "the {w} went to school",
        "the {w} played with {his} toys",
        "the {w} did {his} homework",
        "the {w} was too young to drive",
        "the {w} learned to read at school",
    ],
    ("family", "parent"): [
        "the {w} cooked dinner for {his} children",
        "the {w} tucked the children into bed",
        "the {w} raised {his} children",
    ],
    ("family", "parent_sibling"): [
        "the {w} visited {his} nieces and nephews",
        "the {w} sent presents to {his} nephews",
        "the {w} spoiled {his} nieces",
    ],
    ("family", "sibling"): [
        "the {w} argued with {his} siblings",
        "the {w} shared a bedroom with {his} siblings",
        "the {w} and {his} twin look alike",
    ],
    ("family", "child"): [
        "the {w} obeyed {his} parents",
        "the {w} thanked {his} parents",
        "the {w} was raised by loving parents",
    ],
    ("family", "spouse"): [
        "the {w} married {his} partner",
        "the {w} wore {his} wedding ring",
        "the {w} celebrated the anniversary",
    ],
    ("gender", "male"): [
        "the {w} said he was tired",
        "he is the {w}",
        "the {w} shaved his beard",
        "the {w} looked at himself",
    ],
    ("gender", "female"): [
        "the {w} said she was tired",
        "she is the {w}",
        "the {w} brushed her hair",
        "the {w} looked at herself",
    ],
}

# (country, capital, language, food, landmark): a country and its capital share the
# "identity" contexts and differ in the "kind of place" contexts, so
#     france - paris + madrid = [country + french] - [city + french] + [city + spanish] = spain
_PLACES = [
    ("france", "paris", "french", "croissants", "eiffel"),
    ("spain", "madrid", "spanish", "paella", "prado"),
    ("italy", "rome", "italian", "pizza", "colosseum"),
    ("germany", "berlin", "german", "sausages", "reichstag"),
    ("japan", "tokyo", "japanese", "sushi", "skytree"),
    ("greece", "athens", "greek", "olives", "parthenon"),
    ("russia", "moscow", "russian", "borscht", "kremlin"),
    ("egypt", "cairo", "arabic", "falafel", "pyramids"),
]
_PLACE_TEMPLATES = {
    "country": [
        "{x} is a large country",
        "the government of {x} met today",
        "the borders of {x} are long",
        "the nation of {x} held an election",
    ],
    "city": [
        "{x} is a big city",
        "the streets of {x} are busy",
        "the mayor of {x} opened a museum",
        "the traffic in {x} is heavy",
    ],
    "identity": [
        "people in {x} speak {language}",
        "the {language} language is spoken in {x}",
        "i ate {food} in {x}",
        "{x} is famous for {food}",
        "tourists visit the {landmark} in {x}",
        "the {landmark} is a famous sight in {x}",
    ],
}

#: Analogies the toy corpus is built to contain: (a, b, c, expected) means
#: "a is to b as c is to expected", i.e. b - a + c ~ expected.
ANALOGIES = [
    ("man", "king", "woman", "queen"),
    ("man", "woman", "king", "queen"),
    ("boy", "prince", "girl", "princess"),
    ("man", "king", "boy", "prince"),
    ("king", "queen", "prince", "princess"),
    ("father", "uncle", "mother", "aunt"),
    ("brother", "sister", "son", "daughter"),
    ("husband", "wife", "father", "mother"),
    ("paris", "france", "madrid", "spain"),
    ("france", "paris", "italy", "rome"),
    ("germany", "berlin", "japan", "tokyo"),
]


def _people_sentences() -> list[str]:
    out = []
    for male, female, attrs in _PERSON_PAIRS:
        for word, gender, his in ((male, "male", "his"), (female, "female", "her")):
            for key in list(attrs.items()) + [("gender", gender)]:
                out += [t.format(w=word, his=his) for t in _PERSON_TEMPLATES[key]]
    return out


def _place_sentences() -> list[str]:
    out = []
    for country, city, language, food, landmark in _PLACES:
        for place, kind in ((country, "country"), (city, "city")):
            for t in _PLACE_TEMPLATES[kind] + _PLACE_TEMPLATES["identity"]:
                out.append(t.format(x=place, language=language, food=food, landmark=landmark))
    return out


def toy_corpus(seed: int = 0, repeats: int = 1) -> list[str]:
    """Lower-case sentences about people and places whose structure is known.

    Every (word, template) combination appears exactly ``repeats`` times, so the
    co-occurrence counts are perfectly balanced (king and queen see exactly the same
    contexts except his/her, he/she). The order is shuffled with ``seed``.
    See :data:`ANALOGIES` for the analogies this structure supports.

    >>> len(toy_corpus()), toy_corpus()[0]
    (342, 'people in cairo speak arabic')
    """
    _check_positive("repeats", repeats)
    sentences = unique(_people_sentences() + _place_sentences()) * repeats  # each sentence `repeats` times
    random.Random(seed).shuffle(sentences)
    return sentences


# =========================================================================================
# 2. Masked language modelling and the many senses of "mole"
# =========================================================================================
#: The four meanings of "mole" in :func:`mole_sentences`.
MOLE_SENSES = ("animal", "chemistry", "spy", "skin")

# Each template has a {x} slot. Filled with "mole" it gives a sentence about that sense;
# filled with one of the other words it gives an ordinary sentence with the same context,
# so a model has to read the context to know which "mole" it is looking at.
_SENSE_TEMPLATES = {
    "animal": (["rabbit", "badger", "fox"], [
        "the {x} dug a tunnel under the garden",
        "a small {x} lives underground in the field",
        "the gardener chased the {x} out of the lawn",
        "the {x} ate worms in the soil",
        "a furry {x} came out of its burrow",
    ]),
    "chemistry": (["gram", "litre", "kilogram"], [
        "one {x} of water weighs a fixed amount",
        "the chemist measured a {x} of salt",
        "we dissolved one {x} of sugar in the beaker",
        "a {x} of carbon was burned in the lab",
        "the reaction produced one {x} of gas",
    ]),
    "spy": (["traitor", "spy", "informant"], [
        "the {x} leaked secrets to the enemy",
        "the agency found a {x} inside the government",
        "the {x} passed secret files to a foreign agent",
        "the detective exposed the {x} in the ministry",
        "the {x} betrayed the intelligence service",
    ]),
    "skin": (["freckle", "rash", "wart"], [
        "the doctor examined a {x} on her skin",
        "a dark {x} appeared on his arm",
        "the doctor removed the {x} from his face",
        "she noticed a {x} on her neck",
        "the dermatologist checked the {x} on my back",
    ]),
}


def mole_sentences(seed: int = 0) -> list[tuple[str, str]]:
    """Sentences containing the word "mole", each with its sense.

    Returns ``[(sentence, sense), ...]`` with sense in :data:`MOLE_SENSES`
    (5 sentences per sense), shuffled with ``seed``. A contextual model (BERT)
    should give the "mole" token different vectors in different senses.
    """
    pairs = unique((t.format(x="mole"), sense) for sense, (_, templates) in _SENSE_TEMPLATES.items() for t in templates)
    random.Random(seed).shuffle(pairs)
    return pairs


def mlm_corpus(seed: int = 0, repeats: int = 2) -> list[str]:
    """Training sentences for a tiny BERT: :func:`toy_corpus` plus the "mole" templates
    filled with "mole" AND with ordinary words ("rabbit", "gram", "spy", "rash", ...),
    so that the model learns what each kind of context means. Every distinct sentence occurs
    ``repeats`` times; shuffled with ``seed``. (:func:`train_test_split` drops the repeats first.)"""
    _check_positive("repeats", repeats)
    sense = [t.format(x=x) for _, (words, templates) in _SENSE_TEMPLATES.items()
             for t in templates for x in ["mole"] + words]
    sentences = unique(toy_corpus(seed=seed, repeats=1) + sense) * repeats  # each distinct sentence `repeats` times
    random.Random(seed).shuffle(sentences)
    return sentences


# =========================================================================================
# 3. Sentiment: tiny reviews whose label follows from the words (with negation)
# =========================================================================================
_SUBJECTS = ["movie", "film", "book", "show", "story", "acting", "music", "food", "meal", "service", "plot", "ending"]
_POSITIVE = ["good", "great", "excellent", "wonderful", "amazing", "fun", "brilliant", "lovely"]
_NEGATIVE = ["bad", "terrible", "awful", "boring", "poor", "horrible", "dull", "weak"]
_INTENSIFIERS = ["", "really ", "very ", "quite ", "truly "]
_VERBS_POS = ["loved", "liked", "enjoyed"]
_VERBS_NEG = ["hated", "disliked"]
_VERB_BASE = {"loved": "love", "liked": "like", "enjoyed": "enjoy", "hated": "hate", "disliked": "dislike"}


def _review(rng: random.Random, positive: bool) -> str:
    """One review with the requested label. Label rules (what a model must learn):

    * "the X was ADJ"            -> polarity of ADJ
    * "the X was not ADJ"        -> the opposite ("not good" is negative, "not bad" positive)
    * "i VERBED this X"          -> polarity of VERB; "i did not VERB this X" -> opposite
    * "the X was A but the Y was B" -> polarity of B (what comes after "but" wins)
    """
    def adj(pos: bool) -> str:
        return rng.choice(_POSITIVE if pos else _NEGATIVE)

    kind = rng.randrange(5)
    s = rng.choice(_SUBJECTS)
    if kind == 0:
        return f"the {s} was {rng.choice(_INTENSIFIERS)}{adj(positive)}"
    if kind == 1:  # negation flips the adjective
        return f"the {s} was not {rng.choice(['', 'very ', 'really '])}{adj(not positive)}"
    if kind == 2:
        return f"i {rng.choice(_VERBS_POS if positive else _VERBS_NEG)} this {s}"
    if kind == 3:
        verb = rng.choice(_VERBS_NEG if positive else _VERBS_POS)
        return f"i did not {_VERB_BASE[verb]} this {s}"
    s2 = rng.choice([x for x in _SUBJECTS if x != s])
    return f"the {s} was {adj(not positive)} but the {s2} was {adj(positive)}"


def _n_distinct_reviews() -> int:
    """How many different reviews :func:`_review` can write for one label (the same for both)."""
    n_s, n_pos, n_neg = len(_SUBJECTS), len(_POSITIVE), len(_NEGATIVE)
    assert n_pos == n_neg
    plain = n_s * len(_INTENSIFIERS) * n_pos  # the X was (intensifier) ADJ
    negated = n_s * 3 * n_pos  # the X was not (very|really) ADJ
    verbs = n_s * (len(_VERBS_POS) + len(_VERBS_NEG))  # i VERBED this X + i did not VERB this X
    contrast = n_s * (n_s - 1) * n_pos * n_neg  # the X was A but the Y was B
    return plain + negated + verbs + contrast


def sentiment_dataset(n: int = 1000, seed: int = 0) -> list[tuple[str, int]]:
    """``n`` short reviews with labels 1 = positive, 0 = negative (half of each), all different.

    Most labels follow from one word ("great", "boring"), but "not" flips the
    adjective or verb after it, and in "A but B" the clause after "but" decides,
    so a bag of words cannot get everything right while a model that looks at
    word order can.

    Every review occurs once (a review already written is drawn again), so that no split of
    the list can put the same review on both sides. The few short patterns ("i loved this
    film") have only a few dozen variants each, so they are a little rarer than 1 in 5.
    """
    _check_positive("n", n)
    most = 2 * _n_distinct_reviews()
    if n > most:
        raise ValueError(f"n is {n}, but there are only {most} different reviews; expected n <= {most}")
    rng = random.Random(seed)
    seen: set[str] = set()
    data = []
    for i in range(n):
        positive = bool(i % 2)
        review = _review(rng, positive)
        while review in seen:  # draw again: every review once
            review = _review(rng, positive)
        seen.add(review)
        data.append((review, int(positive)))
    rng.shuffle(data)
    return data


# =========================================================================================
# 4. Algorithmic sequence tasks
# =========================================================================================
def _random_sequences(n: int, length: int, vocab_size: int, seed: int, low: int) -> torch.Tensor:
    _check_positive("n", n)
    _check_positive("length", length)
    if not 0 <= low < vocab_size:
        raise ValueError(f"low={low} and vocab_size={vocab_size}: expected 0 <= low < vocab_size")
    g = torch.Generator().manual_seed(seed)
    return torch.randint(low, vocab_size, (n, length), generator=g)  # (n, length)


def copy_task(n: int, length: int, vocab_size: int, seed: int = 0, low: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random sequences of token ids in ``[low, vocab_size)``; the target is the input.

    Returns ``(inputs, targets)``, both LongTensor (n, length). Use ``low=3`` to keep
    ids 0, 1, 2 free for <pad>, <bos>, <eos>.
    """
    x = _random_sequences(n, length, vocab_size, seed, low)
    return x, x.clone()


def reverse_task(n: int, length: int, vocab_size: int, seed: int = 0, low: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Like :func:`copy_task`, but ``targets[i] = inputs[i]`` read backwards."""
    x = _random_sequences(n, length, vocab_size, seed, low)
    return x, x.flip(-1)


def sort_task(n: int, length: int, vocab_size: int, seed: int = 0, low: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Like :func:`copy_task`, but ``targets[i]`` = ``inputs[i]`` sorted ascending."""
    x = _random_sequences(n, length, vocab_size, seed, low)
    return x, x.sort(dim=-1).values


def lm_format(inputs: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn (inputs, targets) into next-token-prediction data for a decoder-only model.

    The model reads the sequence ``s = inputs ++ targets`` (length L + L') and at every
    position predicts the next token: ``x = s[:, :-1]``, ``y = s[:, 1:]``. Predictions
    of the *inputs* are not part of the task, so those positions of ``y`` are set to
    ``ignore_index`` (cross-entropy skips them). Returns ``(x, y)``, each (n, L + L' - 1).
    """
    if inputs.dim() != 2 or targets.dim() != 2 or inputs.shape[0] != targets.shape[0]:
        raise ValueError(f"inputs {tuple(inputs.shape)} and targets {tuple(targets.shape)}: "
                         "expected two 2-D tensors with the same number of rows")
    s = torch.cat([inputs, targets], dim=1)  # (n, L + L')
    x, y = s[:, :-1], s[:, 1:].clone()
    y[:, : inputs.shape[1] - 1] = ignore_index  # positions that would predict input tokens
    return x, y


# =========================================================================================
# 5. A toy English -> Spanish grammar (encoder-decoder lesson)
# =========================================================================================
# Nouns: english -> (spanish singular, spanish plural, gender, english plural)
_NOUNS = {
    "cat": ("gato", "gatos", "m", "cats"),
    "dog": ("perro", "perros", "m", "dogs"),
    "horse": ("caballo", "caballos", "m", "horses"),
    "book": ("libro", "libros", "m", "books"),
    "car": ("coche", "coches", "m", "cars"),
    "hat": ("sombrero", "sombreros", "m", "hats"),
    "house": ("casa", "casas", "f", "houses"),
    "table": ("mesa", "mesas", "f", "tables"),
    "flower": ("flor", "flores", "f", "flowers"),
    "apple": ("manzana", "manzanas", "f", "apples"),
    "shirt": ("camisa", "camisas", "f", "shirts"),
    "chair": ("silla", "sillas", "f", "chairs"),
}
# Colour adjectives: english -> spanish forms by (gender, number); they go AFTER the noun.
_ADJECTIVES = {
    "red": {("m", "sg"): "rojo", ("f", "sg"): "roja", ("m", "pl"): "rojos", ("f", "pl"): "rojas"},
    "white": {("m", "sg"): "blanco", ("f", "sg"): "blanca", ("m", "pl"): "blancos", ("f", "pl"): "blancas"},
    "black": {("m", "sg"): "negro", ("f", "sg"): "negra", ("m", "pl"): "negros", ("f", "pl"): "negras"},
    "yellow": {("m", "sg"): "amarillo", ("f", "sg"): "amarilla", ("m", "pl"): "amarillos", ("f", "pl"): "amarillas"},
    "green": {("m", "sg"): "verde", ("f", "sg"): "verde", ("m", "pl"): "verdes", ("f", "pl"): "verdes"},
    "blue": {("m", "sg"): "azul", ("f", "sg"): "azul", ("m", "pl"): "azules", ("f", "pl"): "azules"},
}
# Determiners: english -> (number, {gender: spanish})
_DETERMINERS = {
    "the": {"sg": {"m": "el", "f": "la"}, "pl": {"m": "los", "f": "las"}},
    "a": {"sg": {"m": "un", "f": "una"}},
    "some": {"pl": {"m": "unos", "f": "unas"}},
    "my": {"sg": {"m": "mi", "f": "mi"}, "pl": {"m": "mis", "f": "mis"}},
    "this": {"sg": {"m": "este", "f": "esta"}},
    "these": {"pl": {"m": "estos", "f": "estas"}},
}
# Predicates after a noun phrase: english by number -> spanish by (gender, number)
_PREDICATES = [
    ({"sg": "is here", "pl": "are here"},
     {("m", "sg"): "está aquí", ("f", "sg"): "está aquí", ("m", "pl"): "están aquí", ("f", "pl"): "están aquí"}),
    ({"sg": "is big", "pl": "are big"},
     {("m", "sg"): "es grande", ("f", "sg"): "es grande", ("m", "pl"): "son grandes", ("f", "pl"): "son grandes"}),
    ({"sg": "is new", "pl": "are new"},
     {("m", "sg"): "es nuevo", ("f", "sg"): "es nueva", ("m", "pl"): "son nuevos", ("f", "pl"): "son nuevas"}),
]
# "i VERB" + noun phrase: two English words become one Spanish verb (the subject is dropped).
_VERBS = {"i see": "veo", "i have": "tengo", "i want": "quiero", "i need": "necesito"}
# Fixed phrases, with their word alignment (english index, spanish index).
_PHRASES = [
    ("let's go", "vamos", ((0, 0), (1, 0))),
    ("hello", "hola", ((0, 0),)),
    ("goodbye", "adiós", ((0, 0),)),
    ("thank you", "gracias", ((0, 0), (1, 0))),
    ("good morning", "buenos días", ((0, 0), (1, 1))),
    ("good night", "buenas noches", ((0, 0), (1, 1))),
    ("see you later", "hasta luego", ((0, 0), (1, 0), (2, 1))),
    ("i am hungry", "tengo hambre", ((0, 0), (1, 0), (2, 1))),
    ("let's eat", "vamos a comer", ((0, 0), (0, 1), (1, 2))),
    ("yes", "sí", ((0, 0),)),
    ("no", "no", ((0, 0),)),
    ("please", "por favor", ((0, 0), (0, 1))),
]


@dataclass(frozen=True)
class TranslationExample:
    """One sentence pair and its word alignment.

    ``alignment`` holds (english_word_index, spanish_word_index) pairs: which words
    translate which (word indices in ``english.split()`` and ``spanish.split()``).
    """

    english: str
    spanish: str
    alignment: tuple[tuple[int, int], ...]


def _noun_phrases() -> list[tuple[list[str], list[str], list[tuple[int, int]], str, str]]:
    """Every determiner (+ colour) + noun phrase: (en words, es words, alignment, gender, number).

    English "DET [ADJ] NOUN" becomes Spanish "DET NOUN [ADJ]": the adjective moves after
    the noun and agrees with its gender and number.
    """
    phrases = []
    for det, forms in _DETERMINERS.items():
        for number, by_gender in forms.items():
            for noun, (es_sg, es_pl, gender, en_pl) in _NOUNS.items():
                en_noun, es_noun = (noun, es_sg) if number == "sg" else (en_pl, es_pl)
                es_det = by_gender[gender]
                phrases.append(([det, en_noun], [es_det, es_noun], [(0, 0), (1, 1)], gender, number))
                for adj, adj_forms in _ADJECTIVES.items():
                    phrases.append(([det, adj, en_noun], [es_det, es_noun, adj_forms[(gender, number)]],
                                    [(0, 0), (1, 2), (2, 1)], gender, number))
    return phrases


def translation_examples() -> list[TranslationExample]:
    """The whole toy grammar, in a fixed order (5,388 sentence pairs).

    Sentence shapes (NP = determiner + optional colour + noun, singular or plural):

    * ``NP``            "the red cat" -> "el gato rojo", "the white house" -> "la casa blanca"
    * ``NP PREDICATE``  "my red cats are new" -> "mis gatos rojos son nuevos"
    * ``I VERB NP``     "i see the white house" -> "veo la casa blanca"
    * fixed phrases     "let's go" -> "vamos"
    """
    return list(_all_translation_examples())


@functools.lru_cache(maxsize=1)
def _all_translation_examples() -> tuple[TranslationExample, ...]:
    """Build the enumeration once (cached; the examples are immutable)."""
    examples = []

    def add(en: list[str], es: list[str], alignment) -> None:
        examples.append(TranslationExample(" ".join(en), " ".join(es), tuple(sorted(alignment))))

    for en, es, align, gender, number in _noun_phrases():
        add(en, es, align)
        for en_pred, es_pred in _PREDICATES:
            en_p, es_p = en_pred[number].split(), es_pred[(gender, number)].split()
            shift_en, shift_es = len(en), len(es)
            add(en + en_p, es + es_p, align + [(shift_en + i, shift_es + i) for i in range(2)])
        for en_verb, es_verb in _VERBS.items():
            # "i" and "see" both align to "veo"; the noun phrase shifts by 2 (en) and 1 (es)
            add(en_verb.split() + en, [es_verb] + es, [(0, 0), (1, 0)] + [(i + 2, j + 1) for i, j in align])
    for en, es, align in _PHRASES:
        add(en.split(), es.split(), align)
    return tuple(examples)


def translation_pairs(n: int | None = None, seed: int = 0) -> list[tuple[str, str]]:
    """(english, spanish) pairs from :func:`translation_examples`, shuffled with ``seed``;
    the first ``n`` of them (all when ``n`` is None)."""
    pairs = [(e.english, e.spanish) for e in translation_examples()]
    random.Random(seed).shuffle(pairs)
    if n is not None:
        if not isinstance(n, int) or not 0 <= n <= len(pairs):
            raise ValueError(f"n is {n!r}, expected an int in [0, {len(pairs)}] (or None for all)")
        pairs = pairs[:n]
    return pairs


def translation_tokenizers() -> tuple[WordTokenizer, WordTokenizer]:
    """Word-level tokenizers ``(source_english, target_spanish)`` over the whole grammar,
    with ``<pad>``=0, ``<bos>``=1, ``<eos>``=2, ``<unk>``=3."""
    examples = translation_examples()
    src = WordTokenizer([e.english for e in examples])
    tgt = WordTokenizer([e.spanish for e in examples])
    return src, tgt


def translation_batch(
    pairs: Sequence[tuple[str, str]], src_tok: WordTokenizer, tgt_tok: WordTokenizer
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Encode pairs for teacher forcing. Returns, all LongTensor and right-padded with <pad>:

    * ``src``     (B, S)  english ids + <eos>
    * ``tgt_in``  (B, T)  <bos> + spanish ids      (what the decoder reads)
    * ``tgt_out`` (B, T)  spanish ids + <eos>      (what it must predict, one step ahead)
    """
    src = src_tok.encode_batch([en for en, _ in pairs], add_eos=True)  # (B, S)
    tgt_in = tgt_tok.encode_batch([es for _, es in pairs], add_bos=True)  # (B, T)
    tgt_out = tgt_tok.encode_batch([es for _, es in pairs], add_eos=True)  # (B, T)
    return src, tgt_in, tgt_out


def alignment_matrix(example: TranslationExample) -> torch.Tensor:
    """The alignment as a 0/1 matrix (T_spanish, T_english): row j marks the English
    words that Spanish word j translates -- the pattern cross-attention should learn."""
    en, es = example.english.split(), example.spanish.split()
    m = torch.zeros(len(es), len(en))  # (T_es, T_en)
    for i, j in example.alignment:
        m[j, i] = 1.0
    return m


# =========================================================================================
# 6. A built-in English-like text for a character-level GPT
# =========================================================================================
_SPEAKERS = ["KING", "QUEEN", "PRINCE", "PRINCESS", "DUKE", "NURSE", "FOOL", "CAPTAIN", "MESSENGER", "LADY"]
_WORDS = {
    "noun": ["crown", "sword", "castle", "river", "horse", "letter", "ring", "moon", "storm", "garden",
             "tower", "ship", "feast", "forest", "bell", "gate", "candle", "road", "heart", "night"],
    "adj": ["cold", "bright", "silent", "golden", "bitter", "gentle", "ancient", "dark", "proud", "sweet",
            "weary", "strange", "noble", "wild", "pale"],
    "verb": ["guard", "seek", "keep", "find", "break", "mend", "follow", "answer", "remember", "forgive",
             "trust", "carry", "leave", "praise", "fear"],
    "place": ["the north", "the hall", "the harbour", "the hills", "the old bridge", "the chapel",
              "the market", "the king's road", "the eastern wall", "the wood"],
    "address": ["my lord", "my lady", "good sir", "sweet cousin", "old friend", "your grace", "brother", "madam"],
    "time": ["tonight", "at dawn", "tomorrow", "ere the bell", "this hour", "by morning", "at noon"],
}
_LINES = [
    "What news from {place}, {address}?",
    "The {noun} is {adj} {time}.",
    "I will {verb} the {noun}, though it cost me dear.",
    "Go, {verb} the {noun}, and {verb} it well.",
    "O {adj} {noun}, why dost thou {verb} me so?",
    "Speak, {address}: who keeps the {noun} {time}?",
    "We ride to {place} {time}, and none shall {verb} us.",
    "The {noun} and the {noun} are {adj} alike.",
    "Thou art as {adj} as a {noun} in {place}.",
    "Let no man {verb} the {adj} {noun}.",
    "Peace, {address}. The {noun} will {verb} us yet.",
    "I saw a {adj} {noun} by {place}.",
    "Then {verb} me, {address}, for the {noun} is {adj}.",
    "Is it the {noun}, or the {adj} {noun}, that you {verb}?",
    "{Address}, I do {verb} you with all my {noun}.",
    "Bring me the {noun} from {place}, and quickly!",
    "Alas, the {noun} is gone, and {time} it was {adj}.",
    "Ha! A {adj} jest, {address}, a {adj} jest.",
]


def _fill(template: str, rng: random.Random) -> str:
    """Fill each {slot} (left to right, independently); {Address} is capitalised."""
    out, rest = [], template
    while "{" in rest:
        before, rest = rest.split("{", 1)
        slot, rest = rest.split("}", 1)
        word = rng.choice(_WORDS[slot.lower()])
        out += [before, word[0].upper() + word[1:] if slot[0].isupper() else word]
    return "".join(out) + rest


def char_corpus(n_chars: int = 200_000, seed: int = 0) -> str:
    """A deterministic play-like text of about ``n_chars`` characters (cut at a scene end).

    Acts and scenes; speakers in capitals followed by ":", then one to three lines;
    blank lines between speeches -- the same layout as Tiny Shakespeare, so a small
    character GPT can learn names, punctuation, capitals and common words in a minute.
    """
    _check_positive("n_chars", n_chars, minimum=100)
    rng = random.Random(seed)
    parts: list[str] = []
    total, act = 0, 0
    while total < n_chars:
        act += 1
        for scene in range(1, 4):
            place = rng.choice(_WORDS["place"])
            block = [f"ACT {act}. SCENE {scene}. {place[0].upper() + place[1:]}.\n\n"]
            for _ in range(rng.randint(6, 12)):
                speaker = rng.choice(_SPEAKERS)
                lines = [_fill(rng.choice(_LINES), rng) for _ in range(rng.randint(1, 3))]
                block.append(f"{speaker}:\n" + "\n".join(lines) + "\n\n")
            text = "".join(block)
            parts.append(text)
            total += len(text)
            if total >= n_chars:
                break
    return "".join(parts)


# =========================================================================================
# 7. Tiny Shakespeare (optional; downloads once, verifies a checksum, caches)
# =========================================================================================
TINY_SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
#: sha256 of the 1,115,394-byte file published in karpathy/char-rnn
TINY_SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


def default_cache_dir() -> Path:
    """``$COURSE_DATA_DIR`` if set, else ``~/.cache/course_lib``."""
    return Path(os.environ.get("COURSE_DATA_DIR") or Path.home() / ".cache" / "course_lib")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tiny_shakespeare(
    cache_dir: str | os.PathLike | None = None,
    url: str = TINY_SHAKESPEARE_URL,
    sha256: str = TINY_SHAKESPEARE_SHA256,
    timeout: float = 30.0,
) -> str:
    """The Tiny Shakespeare text (about 1.1 MB), downloaded once and cached.

    1. If ``cache_dir/tinyshakespeare.txt`` exists and its sha256 matches, read it (no network).
    2. Otherwise download ``url``, check the sha256 and only then save it to the cache.

    Raises ConnectionError with what to do when the download fails (e.g. offline), and
    ValueError when the downloaded bytes do not have the expected checksum.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache / "tinyshakespeare.txt"
    if path.exists():
        data = path.read_bytes()
        if _sha256(data) == sha256:
            return data.decode("utf-8")
        # a stale or corrupt copy: fetch a fresh one below

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read()
    except (urllib.error.URLError, OSError) as err:
        raise ConnectionError(
            f"Could not download Tiny Shakespeare from {url} ({err}). Are you offline?\n"
            f"Either connect and try again, or download the file by hand and save it as {path}. "
            f"Everything else in the course works offline: data.char_corpus() is a built-in alternative."
        ) from err

    got = _sha256(data)
    if got != sha256:
        raise ValueError(f"Downloaded {url} but its sha256 is {got}, expected {sha256}; "
                         "the file is corrupt or has changed, so it was not cached.")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(path)  # atomic: never a half-written cache file
    return data.decode("utf-8")
