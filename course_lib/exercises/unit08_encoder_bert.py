"""Exercises of unit 08: encoder-only transformers (BERT).

Three exercises follow BERT's two training stages:

* ``08.mask_tokens``     corrupt a batch for the masked-language-model objective (15 %, 80/10/10),
                         with an exactly specified random procedure so that it can be graded;
* ``08.mlm_loss``        the cross-entropy on the masked positions only;
* ``08.classifier_head`` fine-tuning: BERT's pooler and a linear classifier on the [CLS] vector.

Weights passed explicitly use the maths convention ``y = x @ W + b`` with ``W`` of shape (in, out).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .. import softmax as S
from .core import Alternative, Case, Exercise, Forbidden, GeneratorSeed, KnownMistake, Property
from .registry import register
from .core import randn as _randn, draw_seed as _seed  # shared case helpers

NOTEBOOK = "08_encoder_bert"
IGNORE_INDEX = -100


# ---------------------------------------------------------------------------------------------------
# 08.mask_tokens
# ---------------------------------------------------------------------------------------------------


def mask_tokens(input_ids: Tensor, vocab_size: int, mask_id: int, special_ids: Sequence[int],
                generator: torch.Generator, mask_prob: float = 0.15) -> tuple[Tensor, Tensor]:
    """Corrupt a batch for masked-language modelling (BERT's 15 % with the 80/10/10 rule).

    input_ids (B, T) long -> (masked_ids (B, T), labels (B, T)). The random procedure, exactly:

    1. ``u = torch.rand(input_ids.shape, generator=generator)``; a position is *selected* when
       ``u < mask_prob`` and its id is not one of ``special_ids`` ([CLS], [SEP], [PAD], ...);
    2. ``r = torch.rand(input_ids.shape, generator=generator)``; a selected position becomes
       ``mask_id`` when ``r < 0.8``, a random token when ``0.8 <= r < 0.9``, and stays as it is
       when ``r >= 0.9``;
    3. ``random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator)`` supplies the
       random tokens;
    4. ``labels`` hold the ORIGINAL id at selected positions and ``-100`` everywhere else, so the
       loss sees only the selected positions.

    All three draws are always made, in this order, with the full (B, T) shape.
    """
    if input_ids.dim() != 2 or input_ids.dtype != torch.long:
        raise ValueError(f"input_ids must be a LongTensor (B, T), got {input_ids.dtype} {tuple(input_ids.shape)}")
    if not 0.0 <= mask_prob <= 1.0:
        raise ValueError(f"mask_prob must lie in [0, 1], got {mask_prob}")
    special = torch.isin(input_ids, torch.as_tensor(list(special_ids), dtype=torch.long))  # (B, T)
    u = torch.rand(input_ids.shape, generator=generator)  # (B, T)
    selected = (u < mask_prob) & ~special  # (B, T) the positions the model must predict
    r = torch.rand(input_ids.shape, generator=generator)  # (B, T) which corruption
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator)  # (B, T)
    masked = input_ids.clone()
    masked[selected & (r < 0.8)] = mask_id  # 80 %: [MASK]
    use_random = selected & (r >= 0.8) & (r < 0.9)  # 10 %: a random token
    masked[use_random] = random_ids[use_random]
    # the remaining 10 % keep their token (but are still predicted)
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))  # (B, T)
    return masked, labels


def mask_always_mask(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob=0.15):
    _, labels = mask_tokens(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob)
    selected = labels != IGNORE_INDEX
    masked = input_ids.clone()
    masked[selected] = mask_id
    return masked, labels


def mask_labels_everywhere(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob=0.15):
    masked, _ = mask_tokens(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob)
    return masked, input_ids.clone()


def mask_specials_too(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob=0.15):
    return mask_tokens(input_ids, vocab_size, mask_id, (), generator, mask_prob)


def mask_rate_inverted(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob=0.15):
    special = torch.isin(input_ids, torch.as_tensor(list(special_ids), dtype=torch.long))
    u = torch.rand(input_ids.shape, generator=generator)
    selected = (u >= mask_prob) & ~special  # keeps 85 % instead of masking 15 %
    r = torch.rand(input_ids.shape, generator=generator)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator)
    masked = input_ids.clone()
    masked[selected & (r < 0.8)] = mask_id
    use_random = selected & (r >= 0.8) & (r < 0.9)
    masked[use_random] = random_ids[use_random]
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    return masked, labels


def mask_labels_corrupted(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob=0.15):
    masked, labels = mask_tokens(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob)
    selected = labels != IGNORE_INDEX
    return masked, torch.where(selected, masked, labels)


def mask_labels_zero(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob=0.15):
    masked, labels = mask_tokens(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob)
    return masked, labels.clamp(min=0)


def _corrupt(input_ids, special_ids, u, r, random_ids, mask_id, mask_prob):
    """The rule applied to given draws (for the draw-order mistakes)."""
    special = torch.isin(input_ids, torch.as_tensor(list(special_ids), dtype=torch.long))
    selected = (u < mask_prob) & ~special
    masked = input_ids.clone()
    masked[selected & (r < 0.8)] = mask_id
    use_random = selected & (r >= 0.8) & (r < 0.9)
    masked[use_random] = random_ids[use_random]
    return masked, torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))


def mask_randint_first(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob=0.15):
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator)
    u = torch.rand(input_ids.shape, generator=generator)
    r = torch.rand(input_ids.shape, generator=generator)
    return _corrupt(input_ids, special_ids, u, r, random_ids, mask_id, mask_prob)


def mask_r_before_u(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob=0.15):
    r = torch.rand(input_ids.shape, generator=generator)
    u = torch.rand(input_ids.shape, generator=generator)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator)
    return _corrupt(input_ids, special_ids, u, r, random_ids, mask_id, mask_prob)


def mask_one_rand(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob=0.15):
    u = torch.rand(input_ids.shape, generator=generator)
    r = u / mask_prob  # one draw for both decisions (valid in distribution, but not the fixed procedure)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator)
    return _corrupt(input_ids, special_ids, u, r, random_ids, mask_id, mask_prob)


def mask_draws_at_selected_only(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob=0.15):
    u = torch.rand(input_ids.shape, generator=generator)
    special = torch.isin(input_ids, torch.as_tensor(list(special_ids), dtype=torch.long))
    selected = (u < mask_prob) & ~special
    n = int(selected.sum())
    r = torch.ones(input_ids.shape)
    r[selected] = torch.rand(n, generator=generator)
    random_ids = torch.zeros_like(input_ids)
    random_ids[selected] = torch.randint(vocab_size, (n,), generator=generator)
    return _corrupt(input_ids, special_ids, u, r, random_ids, mask_id, mask_prob)


def mask_random_and_kept_swapped(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob=0.15):
    u = torch.rand(input_ids.shape, generator=generator)
    r = torch.rand(input_ids.shape, generator=generator)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator)
    swapped = torch.where(r >= 0.9, r - 0.1, torch.where(r >= 0.8, r + 0.1, r))  # random for r >= 0.9, kept below
    return _corrupt(input_ids, special_ids, u, swapped, random_ids, mask_id, mask_prob)


def mask_labels_inverted(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob=0.15):
    masked, labels = mask_tokens(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob)
    return masked, torch.where(labels == IGNORE_INDEX, input_ids, torch.full_like(input_ids, IGNORE_INDEX))


def mask_random_ids_not_special(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob=0.15):
    u = torch.rand(input_ids.shape, generator=generator)
    r = torch.rand(input_ids.shape, generator=generator)
    low = max(special_ids) + 1 if len(special_ids) else 0  # "never draw a special token"
    random_ids = torch.randint(low, vocab_size, input_ids.shape, generator=generator)
    return _corrupt(input_ids, special_ids, u, r, random_ids, mask_id, mask_prob)


def mask_prob_ignored(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob=0.15):
    return mask_tokens(input_ids, vocab_size, mask_id, special_ids, generator, 0.15)


def mask_only_pad_special(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob=0.15):
    return mask_tokens(input_ids, vocab_size, mask_id, (0,), generator, mask_prob)  # [PAD] = 0 hard-coded


def mask_random_over_mask_band(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob=0.15):
    u = torch.rand(input_ids.shape, generator=generator)
    r = torch.rand(input_ids.shape, generator=generator)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator)
    return _corrupt(input_ids, special_ids, u, torch.where(r < 0.8, torch.full_like(r, 0.85), r), random_ids,
                    mask_id, mask_prob)  # r < 0.9 -> random: the [MASK] band overwritten


def mask_specials_corrupted_not_labelled(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob=0.15):
    u = torch.rand(input_ids.shape, generator=generator)
    r = torch.rand(input_ids.shape, generator=generator)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator)
    masked, _ = _corrupt(input_ids, (), u, r, random_ids, mask_id, mask_prob)  # specials corrupted too ...
    _, labels = _corrupt(input_ids, special_ids, u, r, random_ids, mask_id, mask_prob)  # ... but not labelled
    return masked, labels


def mask_decisions_from_u(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob=0.15):
    u = torch.rand(input_ids.shape, generator=generator)
    torch.rand(input_ids.shape, generator=generator)  # r drawn, but not used
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator)
    return _corrupt(input_ids, special_ids, u, u / mask_prob, random_ids, mask_id, mask_prob)


def mask_band_at_the_top(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob=0.15):
    u = torch.rand(input_ids.shape, generator=generator)
    r = torch.rand(input_ids.shape, generator=generator)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator)
    return _corrupt(input_ids, special_ids, u, 1.0 - r, random_ids, mask_id, mask_prob)  # [MASK] for r >= 0.2


def mask_labels_int32(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob=0.15):
    masked, labels = mask_tokens(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob)
    return masked, labels.int()

def mask_where_alternative(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob=0.15):
    """Alternative: torch.where throughout, specials compared one by one."""
    u = torch.rand(input_ids.shape, generator=generator)
    r = torch.rand(input_ids.shape, generator=generator)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator)
    special = torch.zeros(input_ids.shape, dtype=torch.bool)
    for sid in special_ids:
        special |= input_ids == sid
    selected = (u < mask_prob) & ~special
    corrupted = torch.where(r < 0.8, torch.full_like(input_ids, mask_id), torch.where(r < 0.9, random_ids, input_ids))
    masked = torch.where(selected, corrupted, input_ids)
    labels = input_ids.masked_fill(~selected, IGNORE_INDEX)
    return masked, labels


def mask_loop_alternative(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob=0.15):
    """Alternative: the three draws, then a plain loop over the positions."""
    u = torch.rand(input_ids.shape, generator=generator)
    r = torch.rand(input_ids.shape, generator=generator)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator)
    masked, labels = input_ids.clone(), torch.full_like(input_ids, IGNORE_INDEX)
    B, T = input_ids.shape
    for b in range(B):
        for t in range(T):
            tok = int(input_ids[b, t])
            if u[b, t] < mask_prob and tok not in special_ids:
                labels[b, t] = tok
                if r[b, t] < 0.8:
                    masked[b, t] = mask_id
                elif r[b, t] < 0.9:
                    masked[b, t] = random_ids[b, t]
    return masked, labels


DRAW_RULE = ("So that everybody's random choices are comparable (and gradeable), the task fixes the draws: "
             "`u = torch.rand(input_ids.shape, generator=generator)`, then `r = torch.rand(...)` of the same "
             "full (B, T) shape, then `random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator)`, "
             "always all three, in this order.")


def _mask_case(gen, B, T, V, mask_prob, group, note):
    """A padded batch: [CLS]=1 first, [SEP]=2 after the sentence, [PAD]=0 after that; [MASK]=3."""
    ids = torch.randint(4, V, (B, T), generator=gen)
    lengths = torch.randint(max(3, T // 2), T + 1, (B,), generator=gen)  # sentence + [CLS] + [SEP]
    ids[:, 0] = 1
    for b, n in enumerate(lengths.tolist()):
        ids[b, n - 1] = 2
        ids[b, n:] = 0
    kwargs = {} if mask_prob is None else {"mask_prob": mask_prob}
    return Case((ids, V, 3, (0, 1, 2), GeneratorSeed(_seed(gen))), kwargs, group, note)


def _mask_cases(gen, hidden):
    cases = [_mask_case(gen, 8, 12, 30, None, "15 %", "8 padded sentences of up to 12 tokens")]
    if hidden:
        cases.append(_mask_case(gen, 16, 20, 50, None, "15 %", "16 sentences of up to 20 tokens"))
        cases.append(_mask_case(gen, 32, 16, 100, None, "15 %", "32 sentences, vocabulary 100"))
    cases.append(_mask_case(gen, 6, 10, 25, 0.5, "other rates", "mask_prob=0.5"))
    if hidden:
        cases.append(_mask_case(gen, 8, 14, 40, 0.3, "other rates", "mask_prob=0.3"))
    return cases


def _specials_untouched(case, out, derived) -> bool:
    ids = case.args[0]
    special = torch.isin(ids, torch.tensor(case.args[3]))
    masked, labels = out
    return bool((masked[special] == ids[special]).all() and (labels[special] == IGNORE_INDEX).all())


MASK_TOKENS = Exercise(
    id="08.mask_tokens", notebook=NOTEBOOK, function="mask_tokens", points=4,
    title="Masking tokens for the MLM objective (15 %, 80/10/10)", minutes=15,
    reference=mask_tokens, make_cases=_mask_cases,
    forbidden=[Forbidden("torch.bernoulli / torch.multinomial",
                         ("torch.bernoulli", "torch.Tensor.bernoulli", "torch.Tensor.bernoulli_",
                          "torch.multinomial"),
                         "use exactly the three draws the task describes (torch.rand, torch.rand, torch.randint)")],
    properties=[Property("special tokens untouched",
                         "[CLS], [SEP] and [PAD] must never be corrupted and must have label -100",
                         _specials_untouched,
                         fires_for=("0 instead of -100 for unselected labels", "labels inverted",
                                    "labels on every position", "only [PAD] treated as special",
                                    "special tokens corrupted (but not labelled)", "special tokens masked"))],
    mistakes=[
        KnownMistake("80/10/10 rule missing",
                     "Every selected position becomes [MASK]. BERT replaces only 80 % of them by [MASK] "
                     "(r < 0.8), 10 % by a random token (0.8 <= r < 0.9) and leaves 10 % unchanged, so the "
                     "model cannot rely on seeing [MASK] where it must predict.", mask_always_mask),
        KnownMistake("labels on every position",
                     "Your labels hold a token at every position, so the loss would also train on the "
                     "unmasked (visible) tokens, which the model can simply copy. Put -100 where a position "
                     "was not selected.", mask_labels_everywhere),
        KnownMistake("special tokens masked",
                     "You also select [CLS], [SEP] or [PAD] positions. A position may be selected only if "
                     "u < mask_prob AND its id is not in special_ids (torch.isin helps).", mask_specials_too),
        KnownMistake("mask rate inverted",
                     "You select the positions with u >= mask_prob, i.e. 85 % of the tokens instead of 15 %. "
                     "Select u < mask_prob.", mask_rate_inverted),
        KnownMistake("labels hold the corrupted ids",
                     "Your labels at the selected positions are the corrupted ids ([MASK] or random). The "
                     "model must predict the ORIGINAL token: labels = input_ids where selected.",
                     mask_labels_corrupted),
        KnownMistake("0 instead of -100 for unselected labels",
                     "Positions that were not selected get label 0 (a real token id, [PAD] here). Use -100, "
                     "the ignore_index that cross-entropy skips.", mask_labels_zero),
        KnownMistake("randint drawn first",
                     "Your draws come in another order: `randint` before the two `rand`s. " + DRAW_RULE,
                     mask_randint_first),
        KnownMistake("r drawn before u",
                     "Your draws come in another order: the 80/10/10 draw `r` before the selection draw `u`. "
                     + DRAW_RULE, mask_r_before_u),
        KnownMistake("one rand for both decisions",
                     "You reuse the selection draw `u` to choose between [MASK], random and unchanged. That has "
                     "the right proportions, but the task asks for a second, separate draw. " + DRAW_RULE,
                     mask_one_rand),
        KnownMistake("draws only at the selected positions",
                     "You draw `r` and the random ids only for the selected positions (shape (N,)). The task "
                     "draws them for every position. " + DRAW_RULE, mask_draws_at_selected_only),
        KnownMistake("random and unchanged bands swapped",
                     "Your selected positions with r >= 0.9 get a random token and those with 0.8 <= r < 0.9 keep "
                     "theirs. The rule: r < 0.8 -> mask_id, 0.8 <= r < 0.9 -> random_ids, r >= 0.9 -> unchanged.",
                     mask_random_and_kept_swapped),
        KnownMistake("labels inverted",
                     "Your labels hold the token where a position was NOT selected and -100 where it was. The loss "
                     "must see the selected positions: labels = input_ids where selected, -100 elsewhere.",
                     mask_labels_inverted),
        KnownMistake("random ids drawn above the special ids",
                     "You draw the random tokens with torch.randint(low, vocab_size, ...) to avoid special ids. That "
                     "is a reasonable idea, but it changes the draw: use torch.randint(vocab_size, input_ids.shape, "
                     "generator=generator) as the task fixes it. " + DRAW_RULE, mask_random_ids_not_special),
        KnownMistake("mask_prob ignored",
                     "You select with 0.15 whatever `mask_prob` says. Compare u with the argument: u < mask_prob.",
                     mask_prob_ignored),
        KnownMistake("only [PAD] treated as special",
                     "You protect only the id 0 ([PAD]). Every id in `special_ids` ([CLS], [SEP], [PAD], ...) must "
                     "stay unselected: torch.isin(input_ids, torch.tensor(special_ids)).", mask_only_pad_special),
        KnownMistake("random tokens over the [MASK] band",
                     "Your random tokens replace every selected position with r < 0.9, including the r < 0.8 ones "
                     "that should be [MASK]. The bands do not overlap: r < 0.8 -> mask_id, 0.8 <= r < 0.9 -> "
                     "random_ids, r >= 0.9 -> unchanged.", mask_random_over_mask_band),
        KnownMistake("special tokens corrupted (but not labelled)",
                     "Your labels skip the special tokens, but your corruption does not: [CLS], [SEP] or [PAD] can "
                     "become [MASK] or a random token. Use the same `selected` (u < mask_prob and not special) for "
                     "both.", mask_specials_corrupted_not_labelled),
        KnownMistake("80/10/10 decided by u instead of r",
                     "You choose between [MASK], random and unchanged from the selection draw u (u < 0.8 * "
                     "mask_prob, ...), and the second draw r goes unused. That has the right proportions, but the "
                     "task decides with r. " + DRAW_RULE, mask_decisions_from_u),
        KnownMistake("[MASK] band at the top",
                     "You use [MASK] for r >= 0.2 and random tokens for 0.1 <= r < 0.2. The proportions are right, "
                     "but the task fixes the bands from below: r < 0.8 -> mask_id, 0.8 <= r < 0.9 -> random_ids, "
                     "r >= 0.9 -> unchanged, so that everybody's choices are comparable.", mask_band_at_the_top),
        KnownMistake("labels as int32",
                     "Your labels are int32 (.int()). Token ids and labels in PyTorch are int64 (torch.long), which "
                     "the cross-entropy expects: keep the dtype of input_ids.", mask_labels_int32),
    ],
    alternatives=[Alternative("torch.where throughout", mask_where_alternative),
                  Alternative("a loop over the positions", mask_loop_alternative)],
)


# ---------------------------------------------------------------------------------------------------
# 08.mlm_loss
# ---------------------------------------------------------------------------------------------------

LOSS_BUILTINS = Forbidden(
    "a built-in loss (F.cross_entropy, F.nll_loss, nn.CrossEntropyLoss)",
    ("torch.nn.functional.cross_entropy", "torch.nn.functional.nll_loss", "torch.nn.CrossEntropyLoss",
     "torch.nn.NLLLoss"),
    "this exercise asks you to select the masked positions and average their loss yourself",
)


def mlm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Masked-language-model loss: mean cross-entropy over the positions whose label is not -100.

    logits (B, T, V), labels (B, T) -> scalar::

        loss = -(1 / |S|) * sum_{(b, t) in S} log softmax(logits[b, t])[labels[b, t]],
        S = {(b, t) : labels[b, t] != -100}

    (``course_lib.softmax.cross_entropy`` with ``ignore_index=-100``.)
    """
    return S.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)


def _nll_all(logits, labels):
    """Per-position negative log-likelihood (B, T); ignored positions hold 0."""
    logp = S.log_softmax(logits, dim=-1)  # (B, T, V)
    keep = labels != IGNORE_INDEX
    safe = labels.clamp(min=0)
    nll = -logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1)  # (B, T)
    return nll * keep, keep


def mlm_mean_over_all(logits, labels):
    nll, keep = _nll_all(logits, labels)
    return nll.mean()


def mlm_per_sequence_mean(logits, labels):
    nll, keep = _nll_all(logits, labels)
    return (nll.sum(dim=1) / keep.sum(dim=1)).mean()


def mlm_sum(logits, labels):
    nll, keep = _nll_all(logits, labels)
    return nll.sum()


def mlm_ignored_as_token_zero(logits, labels):
    logp = S.log_softmax(logits, dim=-1)
    return -logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).mean()


def mlm_log_of_softmax(logits, labels):
    keep = labels != IGNORE_INDEX
    p = S.softmax(logits[keep], dim=-1)  # (N, V); a tiny probability rounds to 0, log(0) = -inf
    return -torch.log(p.gather(-1, labels[keep].unsqueeze(-1))).mean()


def mlm_all_columns(logits, labels):
    keep = labels != IGNORE_INDEX
    logp = S.log_softmax(logits[keep], dim=-1)  # (N, V)
    return -logp[:, labels[keep]].mean()  # (N, N): every position's log-probability of EVERY target


def mlm_log_softmax_over_positions(logits, labels):
    keep = labels != IGNORE_INDEX
    logp = S.log_softmax(logits, dim=1)[keep]  # over T, not over the vocabulary
    return -logp.gather(-1, labels[keep].unsqueeze(-1)).mean()


def mlm_divided_by_batch(logits, labels):
    nll, keep = _nll_all(logits, labels)
    return nll.sum() / logits.shape[0]


def mlm_labels_positive(logits, labels):
    keep = labels > 0  # drops the real target 0 too
    logp = S.log_softmax(logits[keep], dim=-1)
    return -logp.gather(-1, labels[keep].unsqueeze(-1)).mean()


def mlm_targets_ignored(logits, labels):
    keep = labels != IGNORE_INDEX
    return -S.log_softmax(logits[keep], dim=-1).mean()


def mlm_mean_over_table(logits, labels):
    keep = labels != IGNORE_INDEX
    logp = S.log_softmax(logits[keep], dim=-1)  # (N, V)
    one_hot = (labels[keep].unsqueeze(-1) == torch.arange(logits.shape[-1])).float()
    return -(logp * one_hot).mean()  # divided by N * V


def mlm_shape_one(logits, labels):
    return mlm_loss(logits, labels).reshape(1)


def mlm_logsumexp(logits, labels):
    """Alternative: log-sum-exp minus the target logit, flattened."""
    flat, y = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
    keep = y != IGNORE_INDEX
    flat, y = flat[keep], y[keep]
    return (torch.logsumexp(flat, dim=-1) - flat.gather(1, y.unsqueeze(1)).squeeze(1)).mean()


def mlm_weighted_sum(logits, labels):
    """Alternative: gather everywhere, weight by the keep mask, divide by its sum."""
    keep = labels != IGNORE_INDEX
    logp = torch.log_softmax(logits, dim=-1)
    nll = -logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (nll * keep).sum() / keep.sum()


def _mlm_case(gen, B, T, V, scale, group, note, target_drop=0.0):
    logits = _randn(gen, B, T, V, scale=scale)
    targets = torch.randint(0, V, (B, T), generator=gen)
    targets[0, 1] = 0  # a masked token whose original id is 0 (a label of 0 is a real target)
    chosen = torch.rand(B, T, generator=gen) < 0.3
    chosen[:, 0] = False  # [CLS] is never a target
    for b in range(B):  # every row has at least one target, and rows have different counts
        chosen[b, 1 + b % (T - 1)] = True
    chosen[0, 1:] = True
    labels = torch.where(chosen, targets, torch.full_like(targets, IGNORE_INDEX))
    if target_drop:  # each target's logit far below the others: p(target) ~ e^-99, a float32 subnormal (few bits)
        logits.scatter_add_(-1, targets.unsqueeze(-1), torch.full((B, T, 1), -target_drop))
    return Case((logits, labels), {}, group, note)


def _mlm_cases(gen, hidden):
    cases = [_mlm_case(gen, 3, 6, 10, 2.0, "basic", "B=3, T=6, V=10")]
    if hidden:
        cases.append(_mlm_case(gen, 4, 9, 20, 2.0, "basic", "B=4, T=9, V=20"))
        cases.append(_mlm_case(gen, 8, 12, 50, 1.0, "basic", "B=8, T=12, V=50"))
    cases.append(_mlm_case(gen, 2, 5, 7, 300.0, "large logits", "logits of size ~1000"))
    cases.append(_mlm_case(gen, 2, 6, 8, 0.1, "large logits", "targets about 97 below the other logits",
                           target_drop=97.0))
    if hidden:
        cases.append(_mlm_case(gen, 5, 7, 30, 400.0, "large logits", "B=5, logits of size ~1000"))
        cases.append(_mlm_case(gen, 4, 8, 12, 0.1, "large logits", "B=4, targets about 97 below the others",
                               target_drop=97.0))
    return cases


MLM_LOSS = Exercise(
    id="08.mlm_loss", notebook=NOTEBOOK, function="mlm_loss", points=2,
    title="The MLM loss: masked positions only", minutes=8,
    reference=mlm_loss, make_cases=_mlm_cases, atol=1e-4, rtol=1e-5,
    alternatives=[Alternative("log-sum-exp minus the target logit", mlm_logsumexp),
                  Alternative("weighted sum over all positions / number kept", mlm_weighted_sum)],
    forbidden=[LOSS_BUILTINS],
    mistakes=[
        KnownMistake("mean over all positions",
                     "You zero the loss at unmasked positions but then divide by ALL B*T positions, so the "
                     "loss shrinks with the mask rate. Divide by the number of positions whose label is not "
                     "-100.", mlm_mean_over_all),
        KnownMistake("mean of per-sentence means",
                     "You average within each sentence first, which gives a sentence with one masked token "
                     "as much weight as one with ten. Average over all masked positions of the batch at once.",
                     mlm_per_sequence_mean),
        KnownMistake("sum instead of mean",
                     "Your loss is the sum over the masked positions; take the mean.", mlm_sum),
        KnownMistake("ignored positions counted as token 0",
                     "You replace the -100 labels by 0 and average over every position, so the model is "
                     "trained to predict token 0 wherever nothing was masked. Keep only labels != -100.",
                     mlm_ignored_as_token_zero),
        KnownMistake("log of a softmax",
                     "You take log(softmax(...)). For logits of size 1000 a target's probability rounds to 0 and "
                     "log(0) = -inf. Use the log-softmax directly: torch.log_softmax(logits[keep], dim=-1) (or "
                     "logits - torch.logsumexp(logits, dim=-1, keepdim=True)).", mlm_log_of_softmax),
        KnownMistake("logp[:, targets] instead of logp[range(N), targets]",
                     "You index logp[:, labels[keep]], an (N, N) table: every masked position's log-probability of "
                     "EVERY target. Pick one entry per position: logp[torch.arange(N), labels[keep]].",
                     mlm_all_columns),
        KnownMistake("log-softmax over the positions",
                     "Your log-softmax runs over dim=1, the positions. Each position's distribution is over the "
                     "vocabulary, the last axis: log_softmax(logits, dim=-1).", mlm_log_softmax_over_positions),
        KnownMistake("divided by the batch size",
                     "You divide the summed loss by B, the number of sentences. The loss is the mean over the "
                     "masked POSITIONS: divide by (labels != -100).sum().", mlm_divided_by_batch),
        KnownMistake("labels > 0 instead of labels != -100",
                     "You keep the positions with labels > 0, which also drops the masked positions whose original "
                     "token is id 0. Only -100 means 'not selected': keep = labels != -100.", mlm_labels_positive),
        KnownMistake("targets ignored (mean of all log-probabilities)",
                     "You average the log-probabilities of EVERY vocabulary entry at the masked positions. The loss "
                     "uses each position's label only: -logp[torch.arange(N), labels[keep]].mean().",
                     mlm_targets_ignored),
        KnownMistake("mean over the whole (N, V) table",
                     "You average one_hot * logp over all N * V entries, which divides the loss by V as well. Pick "
                     "each position's target first (logp[torch.arange(N), labels[keep]]), then take the mean.",
                     mlm_mean_over_table),
        KnownMistake("shape (1,) instead of a scalar",
                     "Your loss has shape (1,) (a mean over dim=0 of an (N, 1) tensor, or keepdim). The loss is a 0-d "
                     "tensor, shape (): .mean() of the (N,) losses, or .squeeze().", mlm_shape_one),
    ],
)


# ---------------------------------------------------------------------------------------------------
# 08.classifier_head
# ---------------------------------------------------------------------------------------------------


def classifier_head(hidden: Tensor, W_pool: Tensor, b_pool: Tensor, W_cls: Tensor, b_cls: Tensor) -> Tensor:
    """BERT's sentence classifier on the encoder output::

        cls    = hidden[:, 0]                       (B, D)   the [CLS] position (always first)
        pooled = tanh(cls @ W_pool + b_pool)        (B, D)   BERT's "pooler"
        logits = pooled @ W_cls + b_cls             (B, C)   one score per class (no softmax)

    hidden (B, T, D), W_pool (D, D), b_pool (D,), W_cls (D, C), b_cls (C,) -> (B, C).
    """
    if hidden.dim() != 3:
        raise ValueError(f"hidden must have shape (B, T, D), got {tuple(hidden.shape)}")
    cls = hidden[:, 0]  # (B, D)
    pooled = torch.tanh(cls @ W_pool + b_pool)  # (B, D)
    return pooled @ W_cls + b_cls  # (B, C)


def head_last_position(hidden, W_pool, b_pool, W_cls, b_cls):
    return classifier_head(hidden[:, -1:], W_pool, b_pool, W_cls, b_cls)


def head_mean_pooling(hidden, W_pool, b_pool, W_cls, b_cls):
    return classifier_head(hidden.mean(dim=1, keepdim=True), W_pool, b_pool, W_cls, b_cls)


def head_no_tanh(hidden, W_pool, b_pool, W_cls, b_cls):
    return (hidden[:, 0] @ W_pool + b_pool) @ W_cls + b_cls


def head_softmax(hidden, W_pool, b_pool, W_cls, b_cls):
    return S.softmax(classifier_head(hidden, W_pool, b_pool, W_cls, b_cls), dim=-1)


def head_pooler_skipped(hidden, W_pool, b_pool, W_cls, b_cls):
    return hidden[:, 0] @ W_cls + b_cls


def head_first_sequence(hidden, W_pool, b_pool, W_cls, b_cls):
    return torch.tanh(hidden[0] @ W_pool + b_pool) @ W_cls + b_cls  # hidden[0]: the first SEQUENCE, (T, D)


def head_relu(hidden, W_pool, b_pool, W_cls, b_cls):
    return torch.relu(hidden[:, 0] @ W_pool + b_pool) @ W_cls + b_cls


def head_pool_transposed(hidden, W_pool, b_pool, W_cls, b_cls):
    return torch.tanh(hidden[:, 0] @ W_pool.T + b_pool) @ W_cls + b_cls


def head_tanh_on_logits(hidden, W_pool, b_pool, W_cls, b_cls):
    return torch.tanh(classifier_head(hidden, W_pool, b_pool, W_cls, b_cls))


def head_max_pooling(hidden, W_pool, b_pool, W_cls, b_cls):
    return torch.tanh(hidden.amax(dim=1) @ W_pool + b_pool) @ W_cls + b_cls


def head_position_axis_kept(hidden, W_pool, b_pool, W_cls, b_cls):
    return torch.tanh(hidden[:, :1] @ W_pool + b_pool) @ W_cls + b_cls  # (B, 1, C)


def head_bias_after_tanh(hidden, W_pool, b_pool, W_cls, b_cls):
    return (torch.tanh(hidden[:, 0] @ W_pool) + b_pool) @ W_cls + b_cls


def head_log_softmax(hidden, W_pool, b_pool, W_cls, b_cls):
    return S.log_softmax(classifier_head(hidden, W_pool, b_pool, W_cls, b_cls), dim=-1)


def head_b_pool_forgotten(hidden, W_pool, b_pool, W_cls, b_cls):
    return torch.tanh(hidden[:, 0] @ W_pool) @ W_cls + b_cls


def head_b_cls_forgotten(hidden, W_pool, b_pool, W_cls, b_cls):
    return torch.tanh(hidden[:, 0] @ W_pool + b_pool) @ W_cls


def head_sum_pooling(hidden, W_pool, b_pool, W_cls, b_cls):
    return torch.tanh(hidden.sum(dim=1) @ W_pool + b_pool) @ W_cls + b_cls


def head_sigmoid(hidden, W_pool, b_pool, W_cls, b_cls):
    return torch.sigmoid(hidden[:, 0] @ W_pool + b_pool) @ W_cls + b_cls


def head_second_position(hidden, W_pool, b_pool, W_cls, b_cls):
    return torch.tanh(hidden[:, 1] @ W_pool + b_pool) @ W_cls + b_cls


def head_einsum(hidden, W_pool, b_pool, W_cls, b_cls):
    """Alternative: einsum on the [CLS] slice."""
    pooled = torch.tanh(torch.einsum("bd,de->be", hidden[:, 0, :], W_pool) + b_pool)
    return torch.einsum("bd,dc->bc", pooled, W_cls) + b_cls


def head_select_addmm(hidden, W_pool, b_pool, W_cls, b_cls):
    """Alternative: select(1, 0), addmm and tanh."""
    cls = hidden.select(1, 0)
    return torch.addmm(b_cls, torch.tanh(torch.addmm(b_pool, cls, W_pool)), W_cls)


def _head_case(gen, B, T, D, C, group, note):
    hidden = _randn(gen, B, T, D)
    W_pool = _randn(gen, D, D, scale=D ** -0.5)
    b_pool = _randn(gen, D, scale=0.3)
    W_cls = _randn(gen, D, C, scale=D ** -0.5)
    b_cls = _randn(gen, C, scale=0.3)
    return Case((hidden, W_pool, b_pool, W_cls, b_cls), {}, group, note)


def _head_cases(gen, hidden):
    cases = [_head_case(gen, 3, 5, 8, 2, "basic", "B=3, T=5, D=8, 2 classes")]
    if hidden:
        cases.append(_head_case(gen, 6, 9, 16, 2, "basic", "B=6, T=9, D=16"))
    cases.append(_head_case(gen, 4, 7, 12, 5, "more classes", "5 classes"))
    if hidden:
        cases.append(_head_case(gen, 2, 3, 4, 3, "more classes", "3 classes, T=3"))
    return cases


def _ignores_other_positions(case: Case):
    hidden = case.args[0].clone()
    hidden[:, 1:] = torch.flip(hidden[:, 1:], dims=[1]) * 2.0 + 1.0  # change every non-[CLS] vector
    return [Case((hidden,) + tuple(case.args[1:]), {}, case.group)]


def _same_output(case, out, derived) -> bool:
    (other,) = derived
    return bool(torch.allclose(out, other, atol=1e-5))


CLASSIFIER_HEAD = Exercise(
    id="08.classifier_head", notebook=NOTEBOOK, function="classifier_head", points=2,
    title="A classification head on [CLS]", minutes=8,
    reference=classifier_head, make_cases=_head_cases,
    alternatives=[Alternative("einsum", head_einsum), Alternative("select and addmm", head_select_addmm)],
    properties=[Property("reads only [CLS]",
                         "changing the vectors at positions 1..T-1 should not change the logits: the head reads "
                         "position 0, the [CLS] token", _same_output, _ignores_other_positions,
                         fires_for=("[CLS] taken from the last position", "hidden[0] instead of hidden[:, 0]",
                                    "max pooling instead of [CLS]", "mean pooling instead of [CLS]",
                                    "position 1 instead of 0", "sum pooling instead of [CLS]"))],
    mistakes=[
        KnownMistake("[CLS] taken from the last position",
                     "You read hidden[:, -1], the last position (in a padded batch often [PAD]). BERT puts "
                     "[CLS] FIRST: hidden[:, 0].", head_last_position),
        KnownMistake("mean pooling instead of [CLS]",
                     "You average the vectors of all positions. BERT's classifier reads the [CLS] vector, "
                     "hidden[:, 0], which attention has trained to summarise the sentence.", head_mean_pooling),
        KnownMistake("tanh missing",
                     "The pooler is tanh(cls @ W_pool + b_pool); without the tanh it is just another linear "
                     "layer in front of the classifier.", head_no_tanh),
        KnownMistake("probabilities instead of logits",
                     "You return softmax probabilities. Return the raw scores (logits): the cross-entropy "
                     "applies the (log-)softmax itself.", head_softmax),
        KnownMistake("pooler skipped",
                     "You feed the [CLS] vector straight to the classifier. First the pooler: "
                     "pooled = tanh(cls @ W_pool + b_pool), then pooled @ W_cls + b_cls.", head_pooler_skipped),
        KnownMistake("hidden[0] instead of hidden[:, 0]",
                     "You take hidden[0], the first SENTENCE of the batch (all its T positions). The [CLS] vector of "
                     "every sentence is position 0 of the second axis: hidden[:, 0], shape (B, D).",
                     head_first_sequence),
        KnownMistake("ReLU instead of tanh in the pooler",
                     "Your pooler uses ReLU. BERT's pooler is tanh(cls @ W_pool + b_pool).", head_relu),
        KnownMistake("W_pool transposed",
                     "You multiply by W_pool.T. The weights here use the maths convention x @ W with W of shape "
                     "(in, out): cls @ W_pool (only nn.Linear stores the transpose).", head_pool_transposed),
        KnownMistake("tanh on the logits too",
                     "You put the logits through tanh as well, which squashes them into (-1, 1). Only the pooler has "
                     "a tanh; the classifier is linear: pooled @ W_cls + b_cls.", head_tanh_on_logits),
        KnownMistake("max pooling instead of [CLS]",
                     "You take the maximum over all positions. BERT's classifier reads the [CLS] vector, "
                     "hidden[:, 0].", head_max_pooling),
        KnownMistake("position axis kept",
                     "Your logits have shape (B, 1, C): hidden[:, :1] keeps the position axis. hidden[:, 0] drops it "
                     "and gives (B, D), then (B, C).", head_position_axis_kept),
        KnownMistake("b_pool added after the tanh",
                     "You add b_pool after the tanh. The bias belongs inside: tanh(cls @ W_pool + b_pool).",
                     head_bias_after_tanh),
        KnownMistake("log-probabilities instead of logits",
                     "You return log_softmax of the scores. Return the raw logits: the cross-entropy applies the "
                     "log-softmax itself.", head_log_softmax),
        KnownMistake("b_pool forgotten",
                     "You leave out b_pool: pooled = tanh(cls @ W_pool + b_pool).", head_b_pool_forgotten),
        KnownMistake("b_cls forgotten",
                     "You leave out b_cls: logits = pooled @ W_cls + b_cls.", head_b_cls_forgotten),
        KnownMistake("sum pooling instead of [CLS]",
                     "You add up the vectors of all positions. BERT's classifier reads the [CLS] vector, "
                     "hidden[:, 0].", head_sum_pooling),
        KnownMistake("sigmoid instead of tanh in the pooler",
                     "Your pooler uses a sigmoid. BERT's pooler is tanh(cls @ W_pool + b_pool), with outputs in "
                     "(-1, 1).", head_sigmoid),
        KnownMistake("position 1 instead of 0",
                     "You read hidden[:, 1], the first word after [CLS]. [CLS] itself is position 0: hidden[:, 0] "
                     "(Python counts from 0).", head_second_position),
    ],
)


# ---------------------------------------------------------------------------------------------------
# Forgetting the generator (issue 11, 3.): during a graded call PyTorch's global random state is seeded
# from the call (course_lib.exercises.rng), the same inline and in the grader, so drawing from it gives
# known draws, and the mistake can be named, also when only some of the three draws forget it.
# ---------------------------------------------------------------------------------------------------

_DRAWS = ("u", "r", "randint")


def _mask_forgetting(forgotten: tuple):
    """mask_tokens whose draws named in ``forgotten`` ("u", "r", "randint") are made without the generator."""

    def mask_without_generator(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob=0.15):
        g = {name: (None if name in forgotten else generator) for name in _DRAWS}
        special = torch.isin(input_ids, torch.as_tensor(list(special_ids), dtype=torch.long))
        u = torch.rand(input_ids.shape, generator=g["u"])
        selected = (u < mask_prob) & ~special
        r = torch.rand(input_ids.shape, generator=g["r"])
        random_ids = torch.randint(vocab_size, input_ids.shape, generator=g["randint"])
        masked = input_ids.clone()
        masked[selected & (r < 0.8)] = mask_id
        use_random = selected & (r >= 0.8) & (r < 0.9)
        masked[use_random] = random_ids[use_random]
        labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
        return masked, labels

    return mask_without_generator


_DRAW_CODE = {"u": "`u = torch.rand(...)`", "r": "`r = torch.rand(...)`", "randint": "`torch.randint(...)`"}
_PASS_IT = ("Pass `generator=generator` to every random call, so that your draws are the ones everybody (and the "
            "check) gets: torch.rand(input_ids.shape, generator=generator) twice, then "
            "torch.randint(vocab_size, input_ids.shape, generator=generator).")


def _forgotten_mistake(forgotten: tuple) -> KnownMistake:
    """The known mistake of a mask_tokens whose draws in ``forgotten`` have no ``generator=generator``.

    The message claims nothing about the other draws: on small cases forgetting ``u`` alone and forgetting
    ``u`` and ``randint`` can give the same output (random tokens are rare), so it must be true for both.
    """
    if len(forgotten) == len(_DRAWS):
        return KnownMistake(
            "ignores the generator",
            "None of your draws uses `generator`: without `generator=generator` torch.rand and torch.randint draw "
            "from PyTorch's global random state, which nobody else shares. " + _PASS_IT,
            _mask_forgetting(forgotten))
    one = len(forgotten) == 1
    first = _DRAWS.index(forgotten[0])
    later = any(_DRAWS.index(d) > first for d in _DRAWS if d not in forgotten)  # shifted along the stream
    shifted = (", and your later draws that do pass the generator read the part of its stream that belongs to an "
               "earlier draw") if later else ""
    return KnownMistake(
        f"the generator missing from the {' and '.join(forgotten)} draw{'' if one else 's'}",
        f"Your {' and '.join(_DRAW_CODE[d] for d in forgotten)} {'draw has' if one else 'draws have'} no "
        f"`generator=generator`, so {'it draws' if one else 'they draw'} from PyTorch's global random state, "
        f"which nobody else shares{shifted}. " + _PASS_IT,
        _mask_forgetting(forgotten))


# Forgetting u, or u and randint, often give the same output on the public cases (randint matters only at the
# few positions that get a random token): the message of "u" is true for both, and "u and randint" is not listed.
def mask_seeded_inside(input_ids, vocab_size, mask_id, special_ids, generator, mask_prob=0.15):
    # torch.Generator().manual_seed(0), torch.manual_seed(0) + global draws and generator.manual_seed(0) all
    # draw the same numbers: the stream of seed 0
    return mask_tokens(input_ids, vocab_size, mask_id, special_ids, torch.Generator().manual_seed(0), mask_prob)


MASK_TOKENS.mistakes = tuple(MASK_TOKENS.mistakes) + tuple(
    _forgotten_mistake(f) for f in (("u", "r", "randint"), ("u",), ("r",), ("randint",), ("u", "r"), ("r", "randint"))
) + (
    KnownMistake("seeded with 0 inside the function",
                 "Your draws come from a random stream seeded with 0 inside your function (torch.manual_seed(0), a "
                 "new torch.Generator().manual_seed(0), or generator.manual_seed(0)), so every call masks the same "
                 "way whatever generator it is given. The caller seeds the generator: use it as it is. " + _PASS_IT,
                 mask_seeded_inside),
)

register(MASK_TOKENS, MLM_LOSS, CLASSIFIER_HEAD)
