"""The course GPT and BERT compute exactly what Hugging Face's models compute.

Tiny random configs are built here (no download): copy the weights with gpt_from_hf /
bert_from_hf, then compare outputs to 1e-5 and (GPT) the greedy continuation token for token.
"""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers import BertConfig as HFBertConfig  # noqa: E402
from transformers import BertForMaskedLM, BertModel, GPT2Config, GPT2LMHeadModel  # noqa: E402

from course_lib.generation import generate  # noqa: E402
from course_lib.models import BertEncoder, GPT, bert_from_hf, gpt_from_hf  # noqa: E402

ATOL = RTOL = 1e-5


def _tiny_gpt2(seed: int = 0, **overrides) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    kwargs = dict(
        vocab_size=100, n_positions=64, n_embd=32, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0, pad_token_id=0
    )
    kwargs.update(overrides)
    config = GPT2Config(**kwargs, attn_implementation="eager")  # the plain softmax(QK^T/sqrt(d))V path
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # non-trivial LayerNorm parameters, so copying them is tested too
        for name, p in model.named_parameters():
            if "ln" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def _tiny_bert(seed: int = 0, **overrides) -> BertModel:
    torch.manual_seed(seed)
    kwargs = dict(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        type_vocab_size=2,
    )
    kwargs.update(overrides)
    config = HFBertConfig(**kwargs, attn_implementation="eager")
    model = BertModel(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def _ids(B: int, T: int, vocab: int = 100, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, (B, T), generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- GPT-2


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # GPT-2 defaults: gelu_new, eps 1e-5, d_mlp = 4 d
        dict(activation_function="gelu", layer_norm_epsilon=1e-3, n_inner=48),
        dict(tie_word_embeddings=False),
        dict(initializer_range=0.2),  # larger weights: larger logits, same tolerance
    ],
    ids=["gpt2-defaults", "gelu-eps-n_inner", "untied", "large-init"],
)
def test_gpt_logits_match_hugging_face(overrides):
    hf = _tiny_gpt2(**overrides)
    ours = gpt_from_hf(hf)
    assert isinstance(ours, GPT) and not ours.training
    assert ours.config.eps == hf.config.layer_norm_epsilon
    ids = _ids(3, 40)
    with torch.no_grad():
        expected = hf(ids).logits  # (3, 40, 100)
        got = ours(ids)
    assert got.shape == (3, 40, 100)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=RTOL)


def test_gpt_untied_head_is_copied_not_tied():
    hf = _tiny_gpt2(tie_word_embeddings=False)
    ours = gpt_from_hf(hf)
    assert ours.lm_head.weight.data_ptr() != ours.tok_emb.weight.data_ptr()
    torch.testing.assert_close(ours.lm_head.weight, hf.lm_head.weight)


def test_gpt_parameter_count_matches_hugging_face():
    hf = _tiny_gpt2()
    ours = gpt_from_hf(hf)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters())


def test_gpt_greedy_continuation_matches_hugging_face():
    # larger initial weights than GPT-2's 0.02: the continuation then varies instead of
    # repeating one token, so a wrong cache or position would show
    hf = _tiny_gpt2(seed=4, initializer_range=0.2)
    ours = gpt_from_hf(hf)
    prompt = _ids(2, 6, seed=1)
    with torch.no_grad():
        expected = hf.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=20,
            min_new_tokens=20,
            do_sample=False,
            pad_token_id=0,
        )
    assert min(len(set(row[6:].tolist())) for row in expected) >= 5
    for use_cache in (True, False):
        got = generate(ours, prompt, max_new_tokens=20, temperature=0, use_cache=use_cache)
        assert torch.equal(got, expected), (use_cache, got, expected)


def test_gpt_from_hf_rejects_unsupported_options():
    with pytest.raises(ValueError, match="scale_attn_by_inverse_layer_idx"):
        gpt_from_hf(_tiny_gpt2(scale_attn_by_inverse_layer_idx=True))
    with pytest.raises(ValueError, match="activation"):
        gpt_from_hf(_tiny_gpt2(activation_function="silu"))


# --------------------------------------------------------------------------- BERT


def _padded_batch():
    ids = _ids(3, 20, seed=2)
    attention_mask = torch.ones(3, 20, dtype=torch.long)
    attention_mask[1, 13:] = 0  # row 1: 13 real tokens, then padding
    attention_mask[2, 4:] = 0  # row 2: 4 real tokens
    ids = ids.masked_fill(attention_mask == 0, 0)  # pad id 0
    token_type_ids = torch.zeros(3, 20, dtype=torch.long)
    token_type_ids[:, 8:] = 1  # segment B from position 8
    return ids, attention_mask, token_type_ids


@pytest.mark.parametrize("overrides", [{}, dict(hidden_act="relu", layer_norm_eps=1e-5)], ids=["bert-defaults", "relu-eps"])
def test_bert_hidden_states_match_hugging_face(overrides):
    hf = _tiny_bert(**overrides)
    ours = bert_from_hf(hf)
    assert isinstance(ours, BertEncoder) and not ours.training
    assert ours.config.eps == hf.config.layer_norm_eps
    ids, attention_mask, token_type_ids = _padded_batch()
    with torch.no_grad():
        expected = hf(ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        got = ours(ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
    assert got.shape == (3, 20, 32)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=RTOL)


def test_bert_padding_and_token_types_matter():
    """Guards against a test that would pass with the mask or the segment ignored."""
    ours = bert_from_hf(_tiny_bert())
    ids, attention_mask, token_type_ids = _padded_batch()
    with torch.no_grad():
        full = ours(ids, attention_mask, token_type_ids)
        no_mask = ours(ids, None, token_type_ids)
        no_types = ours(ids, attention_mask, None)
        # real tokens must not see padding: change the padded ids, real positions stay put
        other_pad = ours(ids.masked_fill(attention_mask == 0, 7), attention_mask, token_type_ids)
    assert not torch.allclose(full[2, :4], no_mask[2, :4], atol=1e-3)
    assert not torch.allclose(full, no_types, atol=1e-3)
    torch.testing.assert_close(other_pad[attention_mask.bool()], full[attention_mask.bool()], atol=ATOL, rtol=RTOL)


def test_bert_from_hf_accepts_a_model_with_a_bert_attribute():
    torch.manual_seed(0)
    config = _tiny_bert().config
    mlm = BertForMaskedLM(config).eval()
    ours = bert_from_hf(mlm)
    ids, attention_mask, token_type_ids = _padded_batch()
    with torch.no_grad():
        expected = mlm.bert(ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        got = ours(ids, attention_mask, token_type_ids)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=RTOL)
