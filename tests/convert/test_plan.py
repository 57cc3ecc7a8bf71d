"""The pure plan: rule evaluation as the engine does it, exact GGUF sizes, the default table."""

from __future__ import annotations

import random
import re

import pytest

from sdcpp_service.convert.mirror import engine_keeps
from sdcpp_service.convert.plan import QType, Rule, SourceTensor, TypeTable, make_plan, parse_rule
from sdcpp_service.convert.rules import DEFAULT_RULES, default_rules, name_regex
from sdcpp_service.convert.source import default_name, strip_type_suffix
from sdcpp_service.errors import InvalidRequest, UnknownName, UnsupportedModel

# A stand-in for the engine's table (the real one is checked in test_engine_types.py).
TABLE = TypeTable(
    (
        QType("f32", "f32", 0, 1, 4, False, True),
        QType("f16", "f16", 1, 1, 2, False, True),
        QType("q4_0", "q4_0", 2, 32, 18, True, True),
        QType("q8_0", "q8_0", 8, 32, 34, True, True),
        QType("q8_1", "q8_1", 9, 32, 36, True, False),
        QType("q4_k", "q4_K", 12, 256, 144, True, True),
        QType("i32", "i32", 26, 1, 4, False, False),
        QType("bf16", "bf16", 30, 1, 2, False, True),
    )
)


def t(name: str, *shape: int, dtype: str = "F16") -> SourceTensor:
    return SourceTensor(name, tuple(shape), dtype)


CHECKPOINT = [
    t("model.diffusion_model.input_blocks.0.0.weight", 320, 4, 3, 3),
    t("model.diffusion_model.input_blocks.0.0.bias", 320),
    t("model.diffusion_model.input_blocks.1.1.proj_in.weight", 320, 320),
    t("model.diffusion_model.input_blocks.1.1.norm.weight", 320),
    t("model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight", 320, 320),
    t("model.diffusion_model.input_blocks.1.1.transformer_blocks.0.norm1.weight", 320),
    t("model.diffusion_model.time_embed.0.weight", 1280, 320),
    t("model.diffusion_model.middle_block.1.proj_out.weight", 1280, 1280),
    t("cond_stage_model.transformer.text_model.embeddings.token_embedding.weight", 49408, 768),
    t("cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1.weight", 3072, 768),
    t("cond_stage_model.transformer.text_model.encoder.layers.0.layer_norm1.weight", 768),
    t("cond_stage_model.transformer.text_model.embeddings.position_ids", 1, 77, dtype="I64"),
    t("first_stage_model.decoder.mid.attn_1.q.weight", 512, 512),
    t("first_stage_model.decoder.norm_out.weight", 512),
    t("alphas_cumprod", 1000, dtype="F32"),
    t("betas", 1000, dtype="F32"),
]


def test_engine_keeps_mirrors_tensor_should_be_converted() -> None:
    assert engine_keeps("a.b.bias") == "bias"
    assert engine_keeps("double_blocks.0.img_attn.norm.query_norm.scale") == "scale"
    assert engine_keeps("img_in.weight") is not None
    assert engine_keeps("model.diffusion_model.time_embed.0.weight") is not None
    assert engine_keeps("te.token_embedding.weight") == "embedding"
    assert engine_keeps("model.diffusion_model.out.2.weight") is None


def test_plan_follows_engine_rules_without_defaults() -> None:
    p = make_plan(CHECKPOINT, "q8_0", TABLE)
    types = p.types()
    name = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"
    assert types[name] == "q8_0"
    assert types["model.diffusion_model.input_blocks.0.0.weight"] == "f16"  # 3×3 conv
    assert types["model.diffusion_model.input_blocks.0.0.bias"] == "f16"
    assert types["model.diffusion_model.time_embed.0.weight"] == "f16"
    tok = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
    assert types[tok] == "f16"
    # 1-D norms of 320 fit q8_0 blocks: the engine itself would quantize them
    assert types["model.diffusion_model.input_blocks.1.1.norm.weight"] == "q8_0"
    # dropped by the engine on reading
    assert "betas" in p.dropped and types["alphas_cumprod"] == "f32"
    assert "cond_stage_model.transformer.text_model.embeddings.position_ids" in p.dropped


def test_block_size_keeps_rows_that_do_not_fit() -> None:
    p = make_plan(CHECKPOINT, "q4_k", TABLE)
    types = p.types()
    assert types["model.diffusion_model.input_blocks.1.1.proj_in.weight"] == "f16"  # 320 % 256
    assert types["model.diffusion_model.middle_block.1.proj_out.weight"] == "q4_k"  # 1280 % 256
    reason = {x.name: x.reason for x in p.tensors}
    assert "not a multiple" in reason["model.diffusion_model.input_blocks.1.1.proj_in.weight"]


def test_first_matching_rule_wins_and_user_rules_come_first() -> None:
    rules = [
        parse_rule(r"attn1=q4_0", TABLE),
        Rule("transformer_blocks", "f16", "", "default"),
        Rule("proj_out", "q4_k", "", "default"),
    ]
    types = make_plan(CHECKPOINT, "q8_0", TABLE, rules).types()
    name = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"
    assert types[name] == "q4_0"
    assert types["model.diffusion_model.input_blocks.1.1.transformer_blocks.0.norm1.weight"] == (
        "f16"
    )
    assert types["model.diffusion_model.middle_block.1.proj_out.weight"] == "q4_k"


def test_exact_sizes() -> None:
    one = [t("w", 64, 64), t("v", 64, 1, 1, dtype="F32")]
    p = make_plan(one, "q8_0", TABLE)
    # header 24; w: 8+1 name, 4 n_dims, 2×8 ne, 4 type, 8 offset; v: 8+1, 4, 3×8, 4, 8
    header = 24 + (9 + 4 + 16 + 4 + 8) + (9 + 4 + 24 + 4 + 8)
    data_w = 64 * 64 // 32 * 34
    data_v = 64 * 4  # ne0 = 1: not a multiple of 32, stays f32
    pad = lambda n: (n + 31) // 32 * 32  # noqa: E731
    assert p.output_bytes == pad(header) + pad(data_w) + pad(data_v)
    assert p.source_bytes == 64 * 64 * 2 + 64 * 4


def test_read_as_types_and_unreadable_dtypes() -> None:
    p = make_plan([t("a.weight", 32, 32, dtype="F64"), t("b.bias", 4, dtype="BF16")], "f16", TABLE)
    assert [(x.source, x.target) for x in p.tensors] == [("f32", "f16"), ("bf16", "bf16")]
    with pytest.raises(UnsupportedModel, match="BOOL"):
        make_plan([t("c.weight", 4, dtype="BOOL")], "f16", TABLE)


def test_parse_rule_refuses_what_the_engine_would_ignore() -> None:
    assert parse_rule("attn=Q4_K", TABLE) == Rule("attn", "q4_k")
    for bad, match in (
        ("attn", "REGEX=TYPE"),
        ("=q8_0", "REGEX=TYPE"),
        ("a,b=q8_0", "commas"),
        ("a(=q8_0", "bad regex"),
    ):
        with pytest.raises(InvalidRequest, match=match):
            parse_rule(bad, TABLE)
    with pytest.raises(UnknownName) as err:
        parse_rule("attn=q8_1", TABLE)  # listed by the engine, but not writable
    assert "q8_0" in err.value.choices and "q8_1" not in err.value.choices


def test_engine_rule_string_uses_engine_spellings() -> None:
    rules = [Rule("attn", "q4_k"), Rule("norm", "f32")]
    p = make_plan(CHECKPOINT, "q8_0", TABLE, rules)
    assert p.engine_rules(TABLE) == "attn=q4_K,norm=f32"


def test_unknown_type_lists_the_writable_ones() -> None:
    with pytest.raises(UnknownName) as err:
        make_plan(CHECKPOINT, "q9_9", TABLE)
    assert err.value.choices == ["f32", "f16", "q4_0", "q8_0", "q4_k", "bf16"]


def test_name_regex_separates_selected_from_others() -> None:
    rng = random.Random(3)
    parts = ["norm", "norm1", "proj", "attn", "0", "1", "12", "in_layers", "weight", "q"]
    names = sorted(
        {".".join(rng.choice(parts) for _ in range(rng.randint(1, 5))) for _ in range(400)}
    )
    for trial in range(20):
        selected = [n for n in names if rng.random() < 0.3]
        others = [n for n in names if n not in selected]
        rx = name_regex(selected, others)
        assert rx is not None
        compiled = re.compile(rx)
        assert all(compiled.search(n) for n in selected), trial
        assert not any(compiled.search(n) for n in others), trial
    assert name_regex([], names) is None


def test_default_rules_apply_only_to_quantized_targets() -> None:
    assert default_rules("model", "sd1", "f16", CHECKPOINT, TABLE) == []
    rules = default_rules("model", "sd1", "q4_k", CHECKPOINT, TABLE)
    types = make_plan(CHECKPOINT, "q4_k", TABLE, rules).types()
    assert types["first_stage_model.decoder.mid.attn_1.q.weight"] == "f16"  # VAE stays f16
    assert types["first_stage_model.decoder.norm_out.weight"] == "f16"  # VAE rule first
    assert types["model.diffusion_model.input_blocks.1.1.norm.weight"] == "f32"
    layer_norm = "cond_stage_model.transformer.text_model.encoder.layers.0.layer_norm1.weight"
    assert types[layer_norm] == "f32"
    assert types["model.diffusion_model.middle_block.1.proj_out.weight"] == "q4_k"
    # the vector rule is a short suffix regex, not a list of every name
    vector_rule = rules[-1]
    assert vector_rule.origin == "default" and len(vector_rule.pattern) < 200


def test_default_rules_for_a_vae_file_and_for_wan() -> None:
    vae = [t("decoder.mid.attn_1.q.weight", 512, 512), t("decoder.conv_in.weight", 512, 4, 3, 3)]
    rules = default_rules("vae", "sd", "q8_0", vae, TABLE)
    assert make_plan(vae, "q8_0", TABLE, rules).types()["decoder.mid.attn_1.q.weight"] == "f16"
    wan = [t("blocks.0.modulation", 1, 6, 1536, dtype="F32"), t("blocks.0.ffn.0.weight", 64, 64)]
    types = make_plan(
        wan, "q8_0", TABLE, default_rules("diffusion_model", "wan2.1", "q8_0", wan, TABLE)
    ).types()
    assert types == {"blocks.0.modulation": "f32", "blocks.0.ffn.0.weight": "q8_0"}
    assert any(r.archs for r in DEFAULT_RULES)


def test_output_names() -> None:
    types = TABLE.writable()
    assert strip_type_suffix("flux1-dev-Q4_K", types) == "flux1-dev"
    assert strip_type_suffix("model_fp16", types) == "model_fp16"
    from pathlib import Path

    assert default_name(Path("/m/sd15-f16.safetensors"), "q8_0", types) == "sd15-q8_0.gguf"
    assert default_name(Path("/m/pipe"), "q4_0", types) == "pipe-q4_0.gguf"
