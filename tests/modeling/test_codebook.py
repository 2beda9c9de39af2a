"""CodebookFusion: shapes, registered fusion weights, a naive loop reference, persistence."""

from __future__ import annotations

import io

import pytest
import torch

from regionkit.modeling.codebook import CodebookFusion

LLM_DIM = 24
DECODER_DIM = 32


def make_fusion(num_scales: int, tokens_per_scale: int, seed: int = 0) -> CodebookFusion:
    torch.manual_seed(seed)
    return CodebookFusion(num_scales, tokens_per_scale, LLM_DIM, DECODER_DIM)


def naive_fusion(fusion: CodebookFusion, code_states: torch.Tensor) -> torch.Tensor:
    """Per target, per scale: an explicit weighted sum of that scale's token states, then proj."""
    num_scales, tokens = fusion.num_scales, fusion.tokens_per_scale
    weights = torch.softmax(fusion.token_logits.detach().double(), dim=-1)
    fused = torch.zeros(code_states.shape[0], num_scales, LLM_DIM, dtype=torch.float64)
    for n in range(code_states.shape[0]):
        for s in range(num_scales):
            for t in range(tokens):
                fused[n, s] += weights[s, t] * code_states[n, s * tokens + t].double()
    return fusion.double().proj(fused)


@pytest.mark.parametrize(("num_scales", "tokens_per_scale"), [(1, 1), (2, 3), (3, 2)])
def test_output_shape(num_scales: int, tokens_per_scale: int) -> None:
    fusion = make_fusion(num_scales, tokens_per_scale)
    out = fusion(torch.randn(3, num_scales * tokens_per_scale, LLM_DIM))
    assert out.shape == (3, num_scales, DECODER_DIM)


def test_no_targets() -> None:
    fusion = make_fusion(2, 3)
    out = fusion(torch.randn(0, 6, LLM_DIM))
    assert out.shape == (0, 2, DECODER_DIM)


def test_weights_are_registered_uniform_and_trained() -> None:
    fusion = make_fusion(2, 3)
    assert "token_logits" in fusion.state_dict()
    assert any(param is fusion.token_logits for param in fusion.parameters())
    torch.testing.assert_close(fusion.token_weights(), torch.full((2, 3), 1 / 3))

    fusion(torch.randn(4, 6, LLM_DIM)).pow(2).sum().backward()
    grad = fusion.token_logits.grad
    assert grad is not None and grad.abs().sum() > 0
    for name, param in fusion.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name

    with torch.no_grad():
        fusion.token_logits -= fusion.token_logits.grad
    weights = fusion.token_weights()
    assert not torch.allclose(weights, torch.full((2, 3), 1 / 3))
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(2))
    assert (weights > 0).all()


@pytest.mark.parametrize(("num_scales", "tokens_per_scale"), [(1, 1), (2, 3), (3, 2)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matches_naive_loop(num_scales: int, tokens_per_scale: int, dtype: torch.dtype) -> None:
    fusion = make_fusion(num_scales, tokens_per_scale)
    with torch.no_grad():
        fusion.token_logits.normal_()
    code_states = torch.randn(3, num_scales * tokens_per_scale, LLM_DIM)
    actual = fusion.to(dtype)(code_states.to(dtype))
    expected = naive_fusion(fusion, code_states.to(dtype))
    assert actual.dtype == dtype
    tolerance = (
        {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 0.05, "atol": 0.05}
    )
    torch.testing.assert_close(actual.double(), expected, **tolerance)


def test_gradcheck() -> None:
    fusion = CodebookFusion(2, 2, 4, 3).double()
    with torch.no_grad():
        fusion.token_logits.normal_()
    code_states = torch.randn(2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fusion, (code_states,))


def test_wrong_shape_raises() -> None:
    fusion = make_fusion(2, 3)
    with pytest.raises(ValueError, match=r"\(N, 6, 24\).*\(3, 5, 24\)"):
        fusion(torch.randn(3, 5, LLM_DIM))
    with pytest.raises(ValueError, match=">= 1"):
        CodebookFusion(0, 3, LLM_DIM, DECODER_DIM)


def test_a_scales_code_reads_only_that_scales_tokens() -> None:
    """Tokens are scale-major: token 4 of 2 x 3 is scale 1's second. Changing it moves scale
    1's code alone (a token-major reshape would move scale 0's)."""
    fusion = make_fusion(2, 3, seed=7)
    code_states = torch.randn(3, 6, LLM_DIM)
    changed = code_states.clone()
    changed[1, 4] += 1.0
    difference = (fusion(changed) - fusion(code_states)).abs().sum(dim=-1)  # (targets, scales)
    assert difference[1, 1] > 0
    assert difference[1, 0] == 0 and difference[0].sum() == 0 and difference[2].sum() == 0


def test_state_dict_round_trip() -> None:
    fusion = make_fusion(2, 3, seed=1)
    with torch.no_grad():
        fusion.token_logits.normal_()
    buffer = io.BytesIO()
    torch.save(fusion.state_dict(), buffer)
    buffer.seek(0)
    restored = make_fusion(2, 3, seed=2)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    code_states = torch.randn(3, 6, LLM_DIM)
    torch.testing.assert_close(restored(code_states), fusion(code_states), rtol=0, atol=0)
