"""LoRA on the language model: only the adapters, the embeddings (new token rows) and the
parts outside the language model learn; the saved model has the adapters merged, so each
adapted weight moved by exactly scale * B @ A and nothing else of the language model moved."""

from __future__ import annotations

import pytest
import torch

from regionkit.modeling import RegionForConditionalGeneration
from regionkit.train.config import ConfigError, parse_config
from regionkit.train.trainer import MODEL, build_model, train
from tests.train.test_trainer import _config, _dataset

pytest.importorskip("peft")


def test_lora_trains_adapters_and_saves_them_merged(tmp_path):
    data = _dataset(tmp_path / "data")
    lora = {"rank": 4, "alpha": 8.0, "dropout": 0.0, "targets": ["q_proj", "v_proj"]}
    config = parse_config({**_config(data, tmp_path / "run", 3), "lora": lora})
    before = build_model(config)[0].state_dict()  # the same seed: the run's starting weights
    train(config)
    saved = RegionForConditionalGeneration.from_pretrained(tmp_path / "run" / MODEL)
    after = saved.state_dict()
    adapters = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["model"]
    assert sorted(after) == sorted(before)  # a plain region model: no adapter left
    prefix = "model.language_model."
    adapted = 0
    for name, weight in before.items():
        if not name.startswith(prefix) or "embed_tokens" in name:
            continue
        layer = name[len(prefix) : -len(".weight")]
        a = adapters.get(f"{prefix}model.{layer}.lora_A.default.weight")
        if a is None:  # not adapted: frozen
            torch.testing.assert_close(after[name], weight, msg=name)
            continue
        b = adapters[f"{prefix}model.{layer}.lora_B.default.weight"]
        assert b.abs().sum() > 0, f"{layer}: the adapter did not learn"
        torch.testing.assert_close(after[name] - weight, (8.0 / 4) * b @ a, msg=name)
        adapted += 1
    assert adapted == 2 * saved.config.text_config.num_hidden_layers  # q_proj, v_proj each
    embeddings = f"{prefix}embed_tokens.weight"
    assert not torch.equal(after[embeddings], before[embeddings])  # new token rows learn
    projector = next(n for n in before if n.startswith("model.multi_modal_projector"))
    assert not torch.equal(after[projector], before[projector])


def test_lora_refuses_what_it_cannot_do(tmp_path):
    base = _config(tmp_path, tmp_path / "out", 1)
    with pytest.raises(ConfigError, match="do not freeze it"):
        parse_config({**base, "lora": {}, "freeze": ["language_model"]})
    with pytest.raises(ConfigError, match="zero_stage 2 or less"):
        parse_config({**base, "lora": {}, "zero_stage": 3})
    with pytest.raises(ConfigError, match=r"unknown keys \['r'\]"):
        parse_config({**base, "lora": {"r": 8}})


def test_a_deepspeed_override_to_zero3_is_refused_with_lora_too(tmp_path, monkeypatch):
    pytest.importorskip("deepspeed")
    from regionkit.train.deepspeed_engine import DeepSpeedEngine
    from regionkit.train.distributed import LAUNCH_VARIABLES

    for name in LAUNCH_VARIABLES:  # the engine fills them in; leave the process as it was
        monkeypatch.delenv(name, raising=False)
    override = {"zero_optimization": {"stage": 3}}  # the config's own zero_stage stays 2
    config = parse_config(
        {**_config(tmp_path, tmp_path / "out", 1), "lora": {}, "deepspeed": override}
    )
    with pytest.raises(ConfigError, match="ZeRO stage 2 or less"):
        DeepSpeedEngine(build_model(config)[0], config)
