"""LoRA on the language model (peft), with the rest of the region model trained as configured.

Only the language model's linear layers named in `targets` get low-rank adapters; its other
weights are frozen, except the input embeddings (and the output head tied to them), whose new
rows are the region, codebook and reject tokens and must learn. The vision tower, projector,
mask prompt encoder, replay and pixel decoder train unless `freeze` names them. Before the model
is saved the adapters are merged into the weights, so `out/model` is a plain region model that
`from_pretrained` and `regionkit eval` read without peft.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from regionkit.modeling import RegionForConditionalGeneration

LLAMA_LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass(frozen=True)
class LoraSettings:
    """Attributes:
    rank: the adapters' rank.
    alpha: their scale numerator (the update is scaled by alpha / rank).
    dropout: dropout on the adapters' input.
    targets: names of the language model's linear layers to adapt.
    """

    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    targets: list[str] = field(default_factory=lambda: list(LLAMA_LINEARS))


def add_lora(model: RegionForConditionalGeneration, settings: LoraSettings) -> None:
    """Wrap the language model in LoRA adapters, in place."""
    from peft import LoraConfig, LoraModel

    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.targets),
    )
    model.model.language_model = LoraModel(model.model.language_model, config, "default")
    model.get_input_embeddings().weight.requires_grad_(True)  # new token rows must learn
    model.get_output_embeddings().weight.requires_grad_(True)


def merge_lora(model: RegionForConditionalGeneration) -> None:
    """Fold the adapters into the language model's weights and drop them, in place."""
    model.model.language_model = model.model.language_model.merge_and_unload()
