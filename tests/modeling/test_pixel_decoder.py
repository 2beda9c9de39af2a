"""PixelDecoder: scale resolutions, N = 0, gradients, fusion, target independence, persistence."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F

from regionkit.modeling.pixel_decoder import PixelDecoder, PixelDecoderOutput, upsample_masks

DECODER_DIM = 32
VISION_DIM = 16
GRID = 8
MLP_DIM = 64


def make_decoder(num_scales: int, seed: int = 0, **kwargs: int) -> PixelDecoder:
    torch.manual_seed(seed)
    return PixelDecoder(num_scales, DECODER_DIM, VISION_DIM, mlp_dim=MLP_DIM, **kwargs)


def make_inputs(
    num_targets: int, num_scales: int, seed: int = 0, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Codes per target and one image's feature layers shared (expanded) by all targets."""
    generator = torch.Generator().manual_seed(seed)
    codes = torch.randn(num_targets, num_scales, DECODER_DIM, generator=generator)
    features = [
        torch.randn(1, VISION_DIM, GRID, GRID, generator=generator)
        .to(dtype)
        .expand(num_targets, -1, -1, -1)
        for _ in range(num_scales)
    ]
    return codes.to(dtype), features


@pytest.mark.parametrize("num_scales", [1, 2, 3])
def test_output_shapes(num_scales: int) -> None:
    decoder = make_decoder(num_scales)
    out = decoder(*make_inputs(2, num_scales))
    assert isinstance(out, PixelDecoderOutput)
    final = GRID * 2**num_scales
    assert out.masks.shape == (2, final, final)
    assert decoder.output_size(GRID, GRID) == (final, final)
    assert [tuple(logits.shape) for logits in out.per_scale] == [
        (2, GRID * 2 ** (s + 1), GRID * 2 ** (s + 1)) for s in range(num_scales)
    ]
    assert torch.isfinite(out.masks).all()


def test_non_square_grid() -> None:
    decoder = make_decoder(2)
    codes = torch.randn(2, 2, DECODER_DIM)
    features = [torch.randn(2, VISION_DIM, 4, 6) for _ in range(2)]
    assert decoder(codes, features).masks.shape == (2, 16, 24)


@pytest.mark.parametrize("num_scales", [1, 2])
def test_no_targets(num_scales: int) -> None:
    decoder = make_decoder(num_scales)
    codes, features = make_inputs(0, num_scales)
    out = decoder(codes.requires_grad_(), features)
    final = GRID * 2**num_scales
    assert out.masks.shape == (0, final, final)
    assert [tuple(logits.shape) for logits in out.per_scale] == [
        (0, GRID * 2 ** (s + 1), GRID * 2 ** (s + 1)) for s in range(num_scales)
    ]
    # A rank without targets still back-propagates (zero) gradients into every parameter.
    out.masks.sum().backward()
    for name, param in decoder.named_parameters():
        assert param.grad is not None and not param.grad.any(), name


def test_every_parameter_learns() -> None:
    decoder = make_decoder(2)
    codes, features = make_inputs(3, 2)
    out = decoder(codes, features)
    target = (torch.rand(out.masks.shape, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    F.binary_cross_entropy_with_logits(out.masks, target).backward()
    names = [name for name, _ in decoder.named_parameters()]
    for part in (
        "neck",
        "lift",
        "transformer",
        "upscale",
        "hypernet",
        "level_embed",
        "scale_logits",
    ):
        assert any(part in name for name in names), part
    for name, param in decoder.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_fine_scale_is_modulated_by_coarse_prediction() -> None:
    decoder = make_decoder(2)
    out = decoder(*make_inputs(2, 2))
    coarse_head = decoder.scales[0].hypernet[-1].weight
    fine_head = decoder.scales[1].hypernet[-1].weight
    # Scale 0's head reaches scale 1 only through the modulation src * (sigmoid(prev) + 1).
    (grad,) = torch.autograd.grad(out.per_scale[1].sum(), coarse_head, retain_graph=True)
    assert grad.abs().sum() > 0
    (grad,) = torch.autograd.grad(out.per_scale[0].sum(), fine_head, allow_unused=True)
    assert grad is None


def test_final_masks_are_weighted_fusion_of_scales() -> None:
    decoder = make_decoder(3)
    with torch.no_grad():
        decoder.scale_logits.copy_(torch.tensor([0.5, -1.0, 2.0]))
    out = decoder(*make_inputs(2, 3))
    weights = torch.softmax(torch.tensor([0.5, -1.0, 2.0]), dim=0)
    size = tuple(out.masks.shape[-2:])
    expected = sum(
        w * F.interpolate(logits[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
        for w, logits in zip(weights, out.per_scale, strict=True)
    )
    torch.testing.assert_close(out.masks, expected)
    torch.testing.assert_close(make_decoder(2).scale_weights(), torch.full((2,), 0.5))


def test_bfloat16_close_to_float32() -> None:
    decoder = make_decoder(2)
    codes, features = make_inputs(2, 2)
    reference = decoder(codes, features).masks
    out = decoder.to(torch.bfloat16)(*make_inputs(2, 2, dtype=torch.bfloat16))
    assert out.masks.dtype == torch.bfloat16
    assert all(logits.dtype == torch.bfloat16 for logits in out.per_scale)
    torch.testing.assert_close(out.masks.float(), reference, rtol=0.1, atol=0.1)


def test_each_target_is_decoded_from_its_own_code_and_features() -> None:
    """Changing one target's code or feature map changes its mask alone: targets never mix
    (a batch-axis mix-up or a reduction over targets would)."""
    decoder = make_decoder(2, seed=3)
    codes, features = make_inputs(3, 2)
    features = [f.clone() for f in features]
    base = decoder(codes, features).masks
    other_code = codes.clone()
    other_code[1] += 1.0
    changed = (decoder(other_code, features).masks - base).abs().flatten(1).sum(1)
    assert changed[1] > 0 and changed[0] == 0 and changed[2] == 0
    other_features = [f.clone() for f in features]
    other_features[0][2] += 1.0
    changed = (decoder(codes, other_features).masks - base).abs().flatten(1).sum(1)
    assert changed[2] > 0 and changed[0] == 0 and changed[1] == 0


def test_state_dict_round_trip() -> None:
    decoder = make_decoder(2, seed=1)
    with torch.no_grad():
        decoder.scale_logits.normal_()
    buffer = io.BytesIO()
    torch.save(decoder.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert "pos_enc.frequencies" in state
    # A different init seed and positional seed: everything must come from the checkpoint.
    restored = make_decoder(2, seed=2, pe_seed=5)
    restored.load_state_dict(state)
    inputs = make_inputs(2, 2)
    expected, actual = decoder(*inputs), restored(*inputs)
    torch.testing.assert_close(actual.masks, expected.masks, rtol=0, atol=0)
    for got, want in zip(actual.per_scale, expected.per_scale, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_bad_inputs_raise() -> None:
    decoder = make_decoder(2)
    codes, features = make_inputs(2, 2)
    with pytest.raises(ValueError, match=r"expected 2 feature maps.*got 1"):
        decoder(codes, features[:1])
    with pytest.raises(ValueError, match=r"codes must be .*\(N, 2, 32\).*\(2, 3, 32\)"):
        decoder(torch.randn(2, 3, DECODER_DIM), features)
    with pytest.raises(ValueError, match=r"features\[1\]"):
        decoder(codes, [features[0], torch.randn(2, VISION_DIM, GRID, GRID + 1)])
    with pytest.raises(ValueError, match=r"features\[0\]"):
        decoder(codes[:1], features)
    with pytest.raises(ValueError, match="divisible"):
        PixelDecoder(2, DECODER_DIM, VISION_DIM, num_heads=3)


def test_upsample_masks() -> None:
    logits = torch.randn(3, 8, 8)
    out = upsample_masks(logits, (20, 12))
    assert out.shape == (3, 20, 12)
    expected = F.interpolate(logits[:, None], size=(20, 12), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, expected[:, 0])
    torch.testing.assert_close(upsample_masks(logits, (8, 8)), logits)
    assert upsample_masks(torch.randn(0, 8, 8), (4, 4)).shape == (0, 4, 4)
    assert upsample_masks(torch.randn(2, 3, 8, 8), (4, 4)).shape == (2, 3, 4, 4)
