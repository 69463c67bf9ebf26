"""The exercise references of units 09 and 10 that are not course_lib functions themselves agree
with course_lib (and through it with PyTorch), so the exercises teach exactly what the library does."""

import torch

from course_lib import generation as G
from course_lib.attention import MultiHeadAttention, causal_mask, padding_mask
from course_lib.blocks import DecoderBlock as LibDecoderBlock
from course_lib.exercises import unit09_decoder_gpt as u09
from course_lib.exercises.core import materialize
from course_lib.exercises import unit10_encoder_decoder_t5 as u10


def test_09_sample_next_token_equals_course_lib():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(300, 17, generator=gen) * 2
    for kw in [dict(temperature=0.0), dict(temperature=0.7), dict(temperature=1.3, top_k=4),
               dict(temperature=0.9, top_p=0.6), dict(temperature=1.1, top_k=6, top_p=0.8)]:
        a = u09.sample_next_token(logits, **kw, generator=torch.Generator().manual_seed(5))
        b = G.sample_next_token(logits, **kw, generator=torch.Generator().manual_seed(5))
        assert torch.equal(a, b), kw
    for k in (1, 3, 17, 30):
        assert torch.equal(u09.top_k_filter(logits, k), G.top_k_filter(logits, k))
    for p in (0.05, 0.5, 0.9, 1.0):
        assert torch.equal(u09.top_p_filter(logits, p), G.top_p_filter(logits, p))


def test_09_lm_targets_agree_with_the_models_loss():
    model = u09.make_test_gpt(0)
    tokens = torch.randint(0, 13, (3, 9), generator=torch.Generator().manual_seed(1))
    x, y = u09.lm_targets(tokens)
    logits, loss = model(x, targets=y)
    assert logits.shape == (3, 8, 13)
    logp = torch.log_softmax(logits, dim=-1)  # position t predicts tokens[:, t + 1]
    expected = -logp.gather(-1, tokens[:, 1:, None]).mean()
    torch.testing.assert_close(loss, expected)


def test_09_attend_with_cache_matches_multi_head_attention_with_kv_cache():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 7, 16)
    full = mha(x, mask=causal_mask(7))  # (B, T, D)
    k_cache = v_cache = torch.zeros(2, 4, 0, 4)
    outs = []
    for start, stop in [(0, 4), (4, 5), (5, 7)]:  # a prompt, then one token, then two
        part = x[:, start:stop]
        q, k, v = (mha.W_Q(part), mha.W_K(part), mha.W_V(part))
        split = lambda t: t.view(2, stop - start, 4, 4).transpose(1, 2)  # noqa: E731
        z, k_cache, v_cache = u09.attend_with_cache(split(q), split(k), split(v), k_cache, v_cache)
        outs.append(mha.W_O(z.transpose(1, 2).reshape(2, stop - start, 16)))
    torch.testing.assert_close(torch.cat(outs, dim=1), full, atol=1e-5, rtol=1e-5)


def _run_module_case(cls, case):
    spec = materialize(case.args[0])
    module = cls(**spec.init)
    module.load_state_dict(spec.state)
    return module, spec.args


def test_09_text_generator_equals_course_lib_generate_with_and_without_cache():
    for case in u09._generator_cases(torch.Generator().manual_seed(3), hidden=True):
        module, (prompt, n, temperature, top_k, top_p, seed) = _run_module_case(u09.TextGenerator, case)
        out = module(prompt, n, temperature, top_k, top_p, seed)
        for use_cache in (True, False):
            gen = None if seed is None else torch.Generator().manual_seed(case.args[0].args[5].seed)
            lib = G.generate(module.model, prompt, n, temperature, top_k, top_p, generator=gen, use_cache=use_cache)
            assert torch.equal(out, lib)


def test_10_decoder_block_equals_course_lib_block_with_a_causal_mask():
    torch.manual_seed(0)
    ours = u10.DecoderBlock(16, 2).eval()
    lib = LibDecoderBlock(16, 2).eval()
    lib.load_state_dict(ours.state_dict())
    x, memory = torch.randn(3, 5, 16), torch.randn(3, 6, 16)
    src = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 2 + [0] * 4])
    torch.testing.assert_close(ours(x, memory, src), lib(x, memory, causal_mask(5), padding_mask(src)))
    torch.testing.assert_close(ours(x, memory), lib(x, memory, causal_mask(5)))


def test_10_cross_attention_equals_torch_multihead_attention():
    torch.manual_seed(0)
    D, H = 12, 3
    ref = torch.nn.MultiheadAttention(D, H, bias=False, batch_first=True)
    x, memory = torch.randn(2, 4, D), torch.randn(2, 6, D)
    src = torch.tensor([[1] * 6, [1] * 3 + [0] * 3])
    W_in = ref.in_proj_weight  # (3D, D), rows = outputs
    W_Q, W_K, W_V = (W_in[i * D:(i + 1) * D].T.detach() for i in range(3))
    W_O = ref.out_proj.weight.T.detach()
    expected, _ = ref(x, memory, memory, key_padding_mask=(src == 0))  # torch: True = blocked
    got = u10.cross_attention(x, memory, W_Q, W_K, W_V, W_O, H, memory_mask=src)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_10_shift_right_matches_hugging_face_t5():
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(vocab_size=20, d_model=8, d_kv=4, d_ff=16, num_layers=1, num_heads=2,
                      decoder_start_token_id=1, pad_token_id=0)
    model = T5ForConditionalGeneration(config)
    labels = torch.tensor([[5, 6, 2, -100], [7, 2, -100, -100], [8, 9, 10, 2]])
    torch.testing.assert_close(u10.shift_right(labels, bos_id=1, pad_id=0), model._shift_right(labels))


def test_10_translator_equals_course_lib_greedy_decode_and_stops_at_eos():
    for case in u10._translator_cases(torch.Generator().manual_seed(0), hidden=True):
        module, (src, max_len) = _run_module_case(u10.Translator, case)
        out = module(src, max_len)
        assert torch.equal(out, G.greedy_decode(module.model, src, max_len))
        assert (out[:, 0] == 1).all()
        for row in out.tolist():
            if 2 in row:
                assert all(t == 0 for t in row[row.index(2) + 1:])
        if case.group == "every row finishes early":  # the group's promise: <eos> before max_len
            assert all(2 in row and row.index(2) < max_len for row in out.tolist())
        else:
            assert len({tuple(r) for r in out.tolist()}) > 1  # the test model's choices depend on the source
