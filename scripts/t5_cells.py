"""Insert the "What T5 changed" section (issue 14) into solutions/10_encoder_decoder_t5.ipynb, before the recap.

Idempotent: cells this script added before (metadata ``t5_section``) are replaced. Run from the repo root:
``.venv/bin/python scripts/t5_cells.py``, then re-execute the notebook.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PATH = Path(__file__).resolve().parents[1] / "solutions" / "10_encoder_decoder_t5.ipynb"


def md(text: str) -> dict:
    return {"cell_type": "markdown", "metadata": {"t5_section": True}, "source": text.strip("\n")}


def code(text: str, tags: tuple = ()) -> dict:
    meta = {"t5_section": True}
    if tags:
        meta["tags"] = list(tags)
    return {"cell_type": "code", "execution_count": None, "metadata": meta, "outputs": [],
            "source": text.strip("\n")}


CELLS = [
    md(r"""
## 10. What T5 changed

Everything so far is the 2017 Transformer. T5 (Raffel et al. 2020, "Exploring the limits of transfer learning
with a unified text-to-text transformer") keeps its plan, encoder, decoder and cross-attention, and changes a
handful of parts. Each one is a few lines in `course_lib.t5` and `course_lib.relative_position`, built from the
course's attention helpers (`attention_scores`, `split_heads`, `merge_heads`, the masks) and unit 07's `MLP`:

| part | 2017 Transformer (our `EncoderDecoder`) | T5 |
|---|---|---|
| positions | sinusoidal vectors added to the embeddings | **none added**; a learned bias per head on the attention scores, by bucketed relative distance |
| attention scores | $q \cdot k / \sqrt{d_k}$ | $q \cdot k + b_h(\text{bucket}(j - i))$; the $1/\sqrt{d_k}$ moved into the initialisation of $W_Q$ |
| LayerNorm | $(x - \mu)/\sigma \cdot g + b$ | RMS norm: $x / \sqrt{\operatorname{mean}(x^2) + \epsilon} \cdot g$, no mean, no bias |
| linear layers | with biases | no biases |
| feed-forward | $W_2\,\text{gelu}(W_1 x)$ | $W_o\,\text{relu}(W_i x)$; T5 v1.1: $W_o(\text{gelu}(W_0 x) \odot W_1 x)$ ("gated-gelu") |
| vocabulary | one per language | one, shared by encoder, decoder and the (tied) output layer |
| output layer | its own $W_{out}$ | tied to the embedding, decoder output scaled by $d_{model}^{-1/2}$ first |
| decoder's first input | `<bos>` | the pad token |

`course_lib.models.t5_from_hf` copies a Hugging Face `T5ForConditionalGeneration` into the course's `T5`;
`tests/test_hf_t5.py` checks, on small random models built in the test, that the logits agree to within 1e-5
(padded batches, ReLU and gated-GELU, tied and untied) and that greedy decoding picks the same 20 tokens.
"""),
    md(r"""
### Relative position buckets

A score gets one learned number per head that depends only on the **relative position** $j - i$ (key minus
query: $-1$ is the previous token). Nearby distances each get their own bucket; far ones share buckets that
grow logarithmically, and everything at `max_distance` or beyond shares the last one. With $B$ buckets per
direction, $e = B/2$ of them exact, and $n$ the distance:

$$\text{bucket}(n) = \begin{cases} n & n < e \\ \min\!\left(B - 1,\; e + \left\lfloor \dfrac{\ln(n/e)}{\ln(\text{max\_distance}/e)}\,(B - e) \right\rfloor\right) & n \ge e \end{cases}$$

- **Encoder** (bidirectional): `num_buckets` is split in two, $B$ = `num_buckets // 2` per direction; keys on the
  left (and the query itself) use buckets $0..B-1$ with $n = |j - i|$, keys on the right get $B$ added.
- **Decoder** (causal): all $B$ = `num_buckets` buckets describe the past, $n = \max(i - j, 0)$; keys ahead are
  masked anyway and fall in bucket 0.

T5's defaults are 32 buckets and `max_distance` 128. The bias is computed once per stack (in the first layer)
and the same tensor is added in every layer; cross-attention gets none. The figure shows the bucket of every
distance from -40 to 40 and, for a 12-token sentence, the (query, key) bucket matrix of the encoder.
"""),
    code(r"""
from course_lib.relative_position import RelativePositionBias, relative_position_bucket, relative_positions

distances = torch.arange(-40, 41)  # j - i
enc_buckets = relative_position_bucket(distances, bidirectional=True)  # T5's 32 buckets, max_distance 128
dec_buckets = relative_position_bucket(distances, bidirectional=False)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw=dict(width_ratios=[1.6, 1]))
axes[0].step(distances, enc_buckets, where="mid", label="encoder (bidirectional)")
axes[0].step(distances, dec_buckets, where="mid", label="decoder (causal)", linestyle="--")
axes[0].set_xlabel("relative position j - i (key minus query)")
axes[0].set_ylabel("bucket")
axes[0].set_title("T5's buckets: exact near 0, log-spaced further out")
axes[0].legend(fontsize=8)
matrix = relative_position_bucket(relative_positions(12, 12), bidirectional=True)  # (12, 12)
image = axes[1].imshow(matrix, cmap="viridis")
axes[1].set_xlabel("key j")
axes[1].set_ylabel("query i")
axes[1].set_title("encoder buckets, 12 tokens")
fig.colorbar(image, ax=axes[1], fraction=0.046)
fig.tight_layout()
plt.show()
for d in (-1, -7, -8, -20, -128, 1, 8, 300):
    print(f"j - i = {d:>4}: encoder bucket {int(relative_position_bucket(torch.tensor(d))):>2}, "
          f"decoder bucket {int(relative_position_bucket(torch.tensor(d), bidirectional=False)):>2}")
"""),
    code(r"""
enc_of = dict(zip(distances.tolist(), enc_buckets.tolist()))
assert [enc_of[d] for d in (-1, -7, -8, -20, 1, 8)] == [1, 7, 8, 10, 17, 24]
assert int(relative_position_bucket(torch.tensor(300))) == 31 and matrix.diagonal().eq(0).all()
""", tags=("solution-only",)),
    md(r"""
### Exercise 10.5 — T5's relative position buckets (3 points, ~20 min)

Write `relative_position_bucket(relative_position, bidirectional=True, num_buckets=32, max_distance=128)`:

- `relative_position`: an integer tensor of any shape holding $j - i$ (key minus query);
- returns a `LongTensor` (int64) of the same shape with buckets in `[0, num_buckets)`, by the formula above:
  with `bidirectional=True` halve `num_buckets` first and add `num_buckets // 2` for keys to the right
  ($j - i > 0$); with `bidirectional=False` use $n = \max(-(j - i), 0)$;
- the log-spaced bucket takes the integer part (floor) of the expression and is capped at $B - 1$.

The check tries T5's sizes and small tables (8 buckets, `max_distance` 12) where every kind of bucket shows
within a few tokens; the course's function of the same name (imported above for the figure) is off limits.

<details><summary>Hint 1</summary>

Work with a distance `n >= 0` and an `offset` (0, or `num_buckets // 2` on the right in the encoder), then
`offset + torch.where(n < max_exact, n, log_bucket)`. `torch.log` needs a float tensor: `n.float()`; to keep
`log(0)` out of the way use `n.clamp(min=1)` (those entries take the exact branch anyway).
</details>

<details><summary>Hint 2</summary>

`log_bucket = max_exact + (torch.log(n / max_exact) / math.log(max_distance / max_exact) * (B - max_exact)).long()`,
then `.clamp(max=B - 1)`. `max_exact = B // 2`, where `B` is the number of buckets of ONE direction.
</details>
"""),
    code(r'''
# EXERCISE: 10.relative_position_bucket
import math


def relative_position_bucket(relative_position: torch.Tensor, bidirectional: bool = True, num_buckets: int = 32,
                             max_distance: int = 128) -> torch.Tensor:
    """Bucket (int64, same shape) of each relative position j - i, T5's way."""
    ### BEGIN SOLUTION
    rel = relative_position.long()
    if bidirectional:
        B = num_buckets // 2  # buckets per direction
        offset = (rel > 0).long() * B  # keys to the right: the upper half
        n = rel.abs()
    else:
        B = num_buckets
        offset = torch.zeros_like(rel)
        n = (-rel).clamp(min=0)  # how far back the key is
    max_exact = B // 2
    log_ratio = torch.log(n.clamp(min=1).float() / max_exact) / math.log(max_distance / max_exact)
    log_bucket = (max_exact + (log_ratio * (B - max_exact)).long()).clamp(max=B - 1)
    return offset + torch.where(n < max_exact, n, log_bucket)
    ### END SOLUTION
'''),
    code(r"""
check("10.relative_position_bucket", relative_position_bucket)
"""),
    md(r"""
### Exercise 10.6 — T5's attention: a bias on the scores (2 points, ~10 min)

With the buckets, the bias of a layer is `position_bias = weight[buckets]`, shape `(1, H, T_q, T_k)` (the
`RelativePositionBias` module does exactly that). Write `t5_attention(q, k, v, position_bias, mask=None)`:

- `q`: `(B, H, T_q, d)`, `k` and `v`: `(B, H, T_k, d)`; `mask`: `None` or bool (True = may attend), broadcastable
  to `(B, H, T_q, T_k)`, e.g. a causal `(T, T)` or a padding `(B, 1, 1, T)` mask;
- returns `(B, H, T_q, d)`: $\operatorname{softmax}(q k^\top + \text{position\_bias} + \text{mask})\, v$ with the
  softmax over the keys; **no** $1/\sqrt{d}$; blocked keys get weight 0.

`F.scaled_dot_product_attention` and `course_lib.t5.biased_attention` are off limits.

<details><summary>Hint 1</summary>

`scores = q @ k.transpose(-2, -1) + position_bias` is `(B, H, T_q, T_k)`: the bias broadcasts over the batch.
</details>

<details><summary>Hint 2</summary>

`scores.masked_fill(~mask, torch.finfo(scores.dtype).min)`, then `torch.softmax(scores, dim=-1) @ v`. The bias goes
in BEFORE the softmax: it is a preference among the keys, not an amount added to the weights.
</details>
"""),
    code(r'''
# EXERCISE: 10.t5_attention
def t5_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, position_bias: torch.Tensor,
                 mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T + position_bias, masked) v, no 1/sqrt(d): (B, H, T_q, d)."""
    ### BEGIN SOLUTION
    scores = q @ k.transpose(-2, -1) + position_bias  # (B, H, T_q, T_k), unscaled
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)  # blocked keys -> weight 0
    return torch.softmax(scores, dim=-1) @ v  # (B, H, T_q, d)
    ### END SOLUTION
'''),
    code(r"""
check("10.t5_attention", t5_attention)
"""),
    md(r"""
### The other changes, in numbers

T5's norm divides by the root mean square only. On a vector with a large common offset the difference shows:
LayerNorm removes the offset, the RMS norm keeps the direction of the whole vector. And the score of the
attention is not divided by $\sqrt{d_k}$; T5 draws $W_Q$ with a standard deviation $\sqrt{d_k}$ times smaller
instead, so at initialisation the scores have the size that the 2017 scaling would give them:
"""),
    code(r"""
from course_lib.blocks import layer_norm
from course_lib.models import T5, T5Config
from course_lib.t5 import rms_norm

x = torch.tensor([10.0, 11.0, 9.0, 10.0])
ones, zeros = torch.ones(4), torch.zeros(4)
print("LayerNorm:", layer_norm(x, ones, zeros), "\nRMS norm :", rms_norm(x, ones))

torch.manual_seed(0)
probe = T5(T5Config(vocab_size=50, d_model=64, n_heads=4, n_layers=1, d_ff=128))
attn = probe.encoder_blocks[0].attn
h = torch.randn(1, 200, 64)  # unit-variance inputs, as the RMS norm produces
with torch.no_grad():
    q, k = attn.W_Q(h).view(200, 4, 16), attn.W_K(h).view(200, 4, 16)
    scores = torch.einsum("qhd,khd->hqk", q, k)  # q . k, no 1/sqrt(d_k)
print(f"std of T5's unscaled scores at initialisation: {scores.std():.2f} (d_kv = {attn.d_kv})")
"""),
    code(r"""
assert rms_norm(x, ones).mean() > 0.9 and abs(float(layer_norm(x, ones, zeros).mean())) < 1e-6
assert 0.8 < float(scores.std()) < 1.25
""", tags=("solution-only",)),
    md(r"""
### The translator, retrained as a T5

Same data and split as in section 1 (the same 538 held-out sentences, the fixed phrases repeated 20 times),
same size (2 + 2 layers, `d_model` 64, 4 heads, feed-forward 256), same recipe (500 steps of 64 pairs, AdamW
with warm-up and cosine decay, the same learning rate). What changes is T5: one word-level vocabulary for both
languages, no positions added, relative position bias, RMS norms, the ReLU feed-forward, the tied and rescaled
output layer, and decoder inputs that start with the pad token (`shift_right(targets, PAD, PAD)`, exercise 10.3
with T5's start token).
"""),
    code(r"""
from course_lib.tokens import WordTokenizer

joint_tok = WordTokenizer([e.english for e in examples] + [e.spanish for e in examples])  # one vocabulary
J_PAD, J_EOS = joint_tok.pad_id, joint_tok.eos_id
t5_config = T5Config(vocab_size=joint_tok.vocab_size, d_model=64, n_heads=4, n_layers=2, d_ff=256,
                     feed_forward="relu", pad_id=J_PAD, eos_id=J_EOS)  # 32 buckets, max_distance 128
torch.manual_seed(0)
t5_model = T5(t5_config)
n_2017 = sum(p.numel() for p in model.parameters())
n_t5 = sum(p.numel() for p in t5_model.parameters())
longest = max(len(s.split()) + 1 for e in examples for s in (e.english, e.spanish))  # with <eos>
print(f"joint vocabulary: {joint_tok.vocab_size} words; parameters: T5 {n_t5:,}, 2017 model {n_2017:,}; "
      f"longest sentence {longest} tokens")


def make_t5_batch(pairs):
    src = joint_tok.encode_batch([en for en, _ in pairs], add_eos=True)  # (B, S)
    tgt = joint_tok.encode_batch([es for _, es in pairs], add_eos=True)  # (B, T)
    targets = tgt.masked_fill(tgt == J_PAD, -100)
    return src, reference_shift_right(targets, J_PAD, J_PAD), targets  # T5 starts from <pad>


def t5_loss(t5, batch):
    src, tgt_in, targets = batch
    logits = t5(src, tgt_in, attention_mask=(src != J_PAD).long())  # (B, T, V)
    return cross_entropy(logits, targets, ignore_index=-100)


t5_sampler = random.Random(0)
src_ex, tgt_in_ex, _ = make_t5_batch([("the red cat", "el gato rojo")])
print("decoder input:", [joint_tok.itos[i] for i in tgt_in_ex[0].tolist()])
"""),
    code(r"""
# NBVAL_IGNORE_OUTPUT
start = time.perf_counter()
t5_history = train(t5_model, lambda: make_t5_batch(t5_sampler.sample(train_pairs, BATCH)), STEPS, lr=LR,
                   loss_fn=t5_loss, grad_clip=1.0, lr_schedule=cosine_schedule(LR, LR / 10, 50, STEPS), desc="T5")
print(f"{STEPS} steps in {time.perf_counter() - start:.1f} s; final training loss {t5_history['loss'][-1]:.4f}")
""", tags=("train",)),
    code(r"""
# NBVAL_IGNORE_OUTPUT
def t5_translate(sentences):
    src = joint_tok.encode_batch(sentences, add_eos=True)  # (N, S)
    out = t5_model.generate(src, config.max_len - 1, attention_mask=(src != J_PAD).long())  # <pad> y_1 .. <eos>
    return [joint_tok.decode(row) for row in out.tolist()]


t5_predictions = t5_translate([en for en, _ in test_pairs])
t5_correct = [pred == es for pred, (_, es) in zip(t5_predictions, test_pairs)]
t5_phrase_correct = [pred == e.spanish for pred, e in zip(t5_translate([e.english for e in fixed_phrases]),
                                                            fixed_phrases)]
print("exact-match accuracy        2017 model      T5")
print(f"held-out sentences ({len(correct)})   {sum(correct):>4} / {len(correct)}   {sum(t5_correct):>4} / {len(t5_correct)}")
print(f"fixed phrases ({len(phrase_correct)})          {sum(phrase_correct):>4} / {len(phrase_correct)}"
      f"   {sum(t5_phrase_correct):>4} / {len(t5_phrase_correct)}")
"""),
    code(r"""
assert sum(t5_correct) >= 0.99 * len(t5_correct) and all(t5_phrase_correct)
assert sum(correct) >= 0.99 * len(correct) and all(phrase_correct)
assert abs(n_t5 - n_2017) < 0.1 * n_2017 and longest == 6
""", tags=("solution-only",)),
    md(r"""
**Better or worse?** Neither, on this task: both models translate all 12 fixed phrases and (in the stored run)
every held-out sentence, with about the same number of parameters and the same training budget. That is an
honest tie at the ceiling, and the reasons are worth knowing:

- The toy sentences are at most 6 tokens long (with `<eos>`), so no distance exceeds 5. With 32 buckets every
  distance up to 7 has its **own exact bucket**, so the relative bias is simply one learned number per head and offset: the same information that
  sinusoidal positions give a small model, in a different place. The log-spaced buckets, T5's way of handling
  long inputs, are never used here.
- What T5 was designed for does not show on a toy: inputs longer than any seen in training (relative positions
  do not run out, a learned absolute table does), one vocabulary and one text-to-text format for many tasks,
  and pre-training on a huge corpus. Its simplifications (no biases, RMS norm) save compute rather than add
  accuracy.

The learned biases show what T5's heads use positions for. Each line is one encoder head: the bias its
attention scores receive for a key at distance $j - i$:
"""),
    code(r"""
# NBVAL_IGNORE_OUTPUT
with torch.no_grad():
    learned = t5_model.encoder_bias(11, 11)[0, :, 5, :]  # (H, 11): the query at position 5, keys 0..10
fig, ax = plt.subplots(figsize=(7, 3.2))
for h in range(t5_config.n_heads):
    ax.plot(range(-5, 6), learned[h], marker="o", label=f"head {h}")
ax.axvline(0, color="gray", lw=0.8)
ax.set_xlabel("relative position j - i")
ax.set_ylabel("learned bias")
ax.set_title("T5 translator: encoder position bias per head (after training)")
ax.legend(fontsize=8, ncol=2)
fig.tight_layout()
plt.show()
favourite = learned.argmax(dim=1) - 5  # the offset each head prefers
print("offset each encoder head prefers:", favourite.tolist())
"""),
]


HEADER_OLD = "**Time:** about 100 minutes."
HEADER_NEW = "**Time:** about 135 minutes."
COUNT_OLD = "**Exercises:** 4, 11 points."
COUNT_NEW = "**Exercises:** 6, 16 points."
OBJECTIVE_ANCHOR = "and compare the three transformer flavours."
OBJECTIVE = ("and compare the three transformer flavours;\n"
             "- say what T5 changed (relative position buckets, RMS norm, no 1/sqrt(d_k), one shared vocabulary, the\n"
             "  pad token as start), compute T5's relative position buckets and its biased attention, and compare a T5 translator with the\n"
             "  2017 one.")
RECAP_ANCHOR = "- Encoder-only for understanding"
RECAP = ("- **T5** keeps the plan and changes parts: no positions added but a learned bias per head and bucketed\n"
         "  relative distance (exact near 0, log-spaced far away; bidirectional in the encoder, causal in the\n"
         "  decoder), RMS norms, no biases, no 1/sqrt(d_k), one shared vocabulary, the pad token as start; on the\n"
         "  toy task it ties with the 2017 model.\n")


def _edit(cell: dict, old: str, new: str) -> bool:
    text = "".join(cell["source"])
    if old in text and new not in text:
        cell["source"] = text.replace(old, new)
        return True
    return False


NOT_YET = "some of the parts (how positions enter, the normalisation, the attention scaling)."
NOT_YET_NEW = NOT_YET + " Section 10 builds those\nchanges and retrains the translator as a T5."


def main() -> None:
    nb = json.loads(PATH.read_text())
    head = nb["cells"][0]
    _edit(head, NOT_YET, NOT_YET_NEW)
    _edit(head, HEADER_OLD, HEADER_NEW)
    _edit(head, COUNT_OLD, COUNT_NEW)
    _edit(head, OBJECTIVE_ANCHOR, OBJECTIVE)
    cells = [c for c in nb["cells"] if not c.get("metadata", {}).get("t5_section")]
    recap = next(i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and
                 "".join(c["source"]).lstrip().startswith("## Recap"))
    _edit(cells[recap], RECAP_ANCHOR, RECAP + RECAP_ANCHOR)
    for k, cell in enumerate(CELLS):
        cell["id"] = f"t5-section-{k:02d}"  # stable ids (nbformat 4.5)
    nb["cells"] = cells[:recap] + CELLS + cells[recap:]
    PATH.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    print(f"inserted {len(CELLS)} cells before the recap (cell {recap})", file=sys.stderr)


if __name__ == "__main__":
    main()
