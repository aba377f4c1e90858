"""A run's context window: ``model.rope_scaling`` / ``model.rope_theta`` and ``data.seq_len``.

Torch-free, so the config's validation, ``steep validate``, ``steep plan`` and the studio's
fast checks read one rule; ``steep.model.rope`` applies the same values to the base's
transformers config when it loads (and runs transformers' own RoPE validation there).

The vocabulary is Hugging Face's: transformers 5 keeps a model's RoPE in
``config.rope_parameters`` (``rope_type``, ``factor``, ``original_max_position_embeddings``,
``rope_theta`` and the type's own keys); ``rope_scaling`` is the name transformers 4,
LLaMA-Factory and axolotl use for the same dictionary without ``rope_theta``, and the name
this config keeps. The scaled model covers ``factor x original_max_position_embeddings``
positions (the original defaults to the base's ``max_position_embeddings``).
"""

from __future__ import annotations

import difflib
import math
from typing import Annotated, Any

from pydantic import AfterValidator

# the scaling types steep applies (transformers' own names; longrope needs per-dimension
# factor lists fitted for one model, proportional and axial are other models' layouts)
ROPE_TYPES = ("linear", "dynamic", "yarn", "llama3")
# every key of transformers' RopeParameters (modeling_rope_utils; a test keeps this equal)
ROPE_KEYS = (
    "rope_theta", "rope_type", "partial_rotary_factor", "factor",
    "original_max_position_embeddings", "attention_factor", "beta_fast", "beta_slow",
    "short_factor", "long_factor", "low_freq_factor", "high_freq_factor", "mscale",
    "mscale_all_dim", "truncate", "mrope_section",
)  # fmt: skip
# the keys each type reads beyond rope_type and factor (transformers' _validate_*_rope_parameters)
TYPE_KEYS: dict[str, tuple[str, ...]] = {
    "linear": (),
    "dynamic": (),
    "yarn": (
        "attention_factor", "beta_fast", "beta_slow", "mscale", "mscale_all_dim", "truncate",
    ),
    "llama3": ("low_freq_factor", "high_freq_factor"),
}  # fmt: skip
REQUIRED = {"llama3": ("low_freq_factor", "high_freq_factor")}  # Llama 3.1 used 1 and 4
# config.json keys that only a model with rotary position embeddings has
ROTARY_KEYS = (
    "rope_theta", "rope_parameters", "rope_scaling", "rotary_emb_base", "rotary_pct",
    "partial_rotary_factor",
)  # fmt: skip
# model types whose positions are not rotary (learnt, ALiBi): refused with their name
NOT_ROTARY = (
    "gpt2", "gpt_bigcode", "opt", "bloom", "mpt", "bert", "roberta", "xglm", "biogpt",
    "ctrl", "openai-gpt", "gpt_neo", "codegen", "xlnet",
)  # fmt: skip


def rope_scaling_problem(value: dict[str, Any]) -> str | None:
    """Why a ``model.rope_scaling`` mapping cannot apply, or None (one line, field named)."""
    kind = value.get("rope_type")
    if kind is None:
        where = "rope_type (not 'type')" if "type" in value else "rope_type"
        return f"needs {where}: one of {', '.join(ROPE_TYPES)}"
    if kind not in ROPE_TYPES:
        return f"rope_type {kind!r} is not one of {', '.join(ROPE_TYPES)}"
    factor = value.get("factor")
    if isinstance(factor, bool) or not isinstance(factor, int | float):
        return f"rope_type {kind} needs factor: a number >= 1 (new context / original)"
    if factor < 1:
        return f"factor {factor:g} is below 1: RoPE scaling extends the context, factor >= 1"
    original = value.get("original_max_position_embeddings")
    if original is not None and (
        isinstance(original, bool) or not isinstance(original, int) or original < 1
    ):
        return f"original_max_position_embeddings {original!r} is not a positive whole number"
    if "rope_theta" in value:
        return "rope_theta is set as model.rope_theta, beside model.rope_scaling"
    # every type may name the length its factor multiplies (transformers' linear and
    # dynamic do not take the key: steep.model.rope leaves it out of theirs)
    common = ("rope_type", "factor", "original_max_position_embeddings", "partial_rotary_factor")
    allowed = (*common, *TYPE_KEYS[kind])
    for key in value:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            return f"{key!r} is not a key of rope_type {kind}{hint}; its keys: {', '.join(allowed)}"
    missing = [k for k in REQUIRED.get(kind, ()) if k not in value]
    if missing:
        return (
            f"rope_type {kind} needs {' and '.join(missing)} (Llama 3.1: low_freq_factor 1, "
            "high_freq_factor 4)"
        )
    return None


def _checked(value: dict[str, Any]) -> dict[str, Any]:
    problem = rope_scaling_problem(value)
    if problem:
        raise ValueError(problem)
    return value


# model.rope_scaling's type: a mapping, refused when the config is read (field and file named)
RopeScaling = Annotated[dict[str, Any], AfterValidator(_checked)]


def original_positions(rope_scaling: dict[str, Any], base_positions: int) -> int:
    """The context the scaling starts from: its ``original_max_position_embeddings``, or
    the base's ``max_position_embeddings``."""
    return int(rope_scaling.get("original_max_position_embeddings") or base_positions)


def scaled_positions(rope_scaling: dict[str, Any] | None, base_positions: int) -> int:
    """Positions the model covers with ``rope_scaling``: factor x original (the base's own
    context without scaling). The ``max_position_embeddings`` the saved config.json says,
    except for ``dynamic``, whose transformers formula reads that field as the original."""
    if not rope_scaling:
        return base_positions
    return round(float(rope_scaling["factor"]) * original_positions(rope_scaling, base_positions))


def covered_positions(max_positions: int, rope_parameters: dict[str, Any] | None) -> int:
    """The positions a model config covers (``max_positions`` and its ``rope_parameters`` /
    ``rope_scaling`` as config.json keeps them): dynamic NTK keeps the original there and
    scales up to factor times it; every other type writes the covered length itself."""
    params = rope_parameters or {}
    kind = params.get("rope_type", params.get("type"))
    if kind == "dynamic" and isinstance(params.get("factor"), int | float):
        return round(float(params["factor"]) * max_positions)
    return max_positions


def factor_needed(seq_len: int, original: int) -> str:
    """The smallest factor (two decimals, rounded up) with factor x original >= seq_len."""
    return f"{math.ceil(seq_len / original * 100) / 100:g}"


def context_problem(
    seq_len: int,
    max_positions: int | None,
    where: str,
    rope_scaling: dict[str, Any] | None = None,
) -> str | None:
    """Why ``data.seq_len`` cannot train on a base that knows ``max_positions`` (its own
    context, before ``rope_scaling``), or None when it can.

    Past its trained context a RoPE model sees positions it never learnt and its loss jumps;
    the run would train, but on garbage, with no word.
    """
    if not max_positions:
        return None
    covered = scaled_positions(rope_scaling, max_positions)
    if seq_len <= covered:
        return None
    if rope_scaling:
        original = original_positions(rope_scaling, max_positions)
        return (
            f"data.seq_len={seq_len} is above model.rope_scaling's factor "
            f"{float(rope_scaling['factor']):g} x {original} = {covered} positions ({where}): "
            f"raise model.rope_scaling.factor to at least {factor_needed(seq_len, original)}, "
            "or lower data.seq_len"
        )
    need = factor_needed(seq_len, max_positions)
    return (
        f"data.seq_len={seq_len} is above the base's max_position_embeddings={max_positions} "
        f"({where}): lower data.seq_len, or extend the base's context by RoPE scaling with a "
        f"factor of at least {need} (e.g. model.rope_scaling: {{rope_type: yarn, factor: {need}}}) "
        "and continued pretraining on long text"
    )


def not_rotary_problem(model_type: str, where: str) -> str:
    """The refusal of RoPE settings on a base whose positions are not rotary."""
    return (
        f"model.rope_scaling / model.rope_theta: the base is a {model_type} model ({where}), "
        "whose positions are not rotary embeddings (RoPE): RoPE scaling does not apply to "
        "it; remove these settings or use a RoPE base (Llama, Mistral, Qwen, SmolLM, ...)"
    )


def rotary_of(cfg: dict[str, Any]) -> bool | None:
    """Whether a config.json's model has rotary position embeddings: True when it has a
    RoPE key, False for a known learnt/ALiBi type, None when only loading can tell."""
    cfg = {**cfg, **(cfg.get("text_config") or {})}
    if any(cfg.get(k) is not None for k in ROTARY_KEYS):
        return True
    if str(cfg.get("model_type", "")) in NOT_ROTARY:
        return False
    return None


# why train.context_parallel is refused (tests/test_context_plan.py keeps the transformers fact)
CONTEXT_PARALLEL_REASON = (
    "torch's context_parallel (experimental in torch 2.13) runs only CUDA's flash, efficient "
    "and cuDNN SDPA kernels, causal and without an attention mask (never CPU or gloo); "
    "transformers 5's Llama reads the position_ids of torch's load-balanced sequence shards "
    "as packed documents and builds such a mask, steep's document mask is one too, and "
    "steep has no multi-GPU test of it yet"
)


def context_parallel_problem(parallel: int) -> str | None:
    """The refusal of ``train.context_parallel`` above 1 (validate, launch, the studio,
    train), with the reason and where the numbers are."""
    if parallel <= 1:
        return None
    return (
        f"train.context_parallel={parallel}: not available in steep: {CONTEXT_PARALLEL_REASON}; "
        "set it to 1 (`steep plan` shows the longest data.seq_len a GPU holds and how many "
        "GPUs context parallelism would need)"
    )
