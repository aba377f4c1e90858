"""``model.rope_scaling`` / ``model.rope_theta`` applied to a base's transformers config.

Applied to the config before the model is built from it (the rotary embedding computes its
frequencies when it is made), so the step-0 eval already sees the scaled positions, and
``save_pretrained`` writes them into config.json as transformers 5 keeps them:
``rope_parameters`` with the new ``max_position_embeddings`` (llama.cpp's converter and
vLLM read that key). transformers' own RoPE validation (``validate_rope``) checks the
result; what it would only log (an unknown key, a factor below 1) is refused here.
"""

from __future__ import annotations

import logging
from typing import Any

from transformers import PreTrainedConfig

from steep.config import ModelSection
from steep.config.context import (
    context_problem,
    covered_positions,
    not_rotary_problem,
    original_positions,
    scaled_positions,
)
from steep.errors import ConfigError

# keys transformers' validation reads per type; linear and dynamic take no original length
_ORIGINAL_KEY_TYPES = ("yarn", "llama3")


def is_rotary(config: PreTrainedConfig) -> bool:
    """A transformers config whose model has rotary position embeddings (transformers 5
    gives every RoPE config ``rope_parameters``)."""
    return isinstance(getattr(config, "rope_parameters", None), dict)


def apply_rope(config: PreTrainedConfig, model: ModelSection, where: str) -> int | None:
    """Put ``model.rope_scaling`` and ``model.rope_theta`` into ``config`` (in place) and
    return the positions the base covered before (None: nothing to apply); ConfigError in
    one line naming the field and ``where`` (the base) when they cannot apply."""
    scaling, theta = model.rope_scaling, model.rope_theta
    if scaling is None and theta is None:
        return None
    kind = str(getattr(config, "model_type", "?"))
    if not is_rotary(config):
        raise ConfigError(not_rotary_problem(kind, where))
    before = positions_of(config)
    params: dict[str, Any] = dict(config.rope_parameters)
    if any(isinstance(v, dict) for v in params.values()):
        raise ConfigError(
            f"model.rope_scaling: the base ({kind}, {where}) keeps a RoPE per layer type; "
            "steep scales one shared RoPE only"
        )
    if theta is not None:
        params["rope_theta"] = float(theta)
    if scaling is not None:
        base_positions = int(config.max_position_embeddings)
        original = original_positions(scaling, base_positions)
        keep = {k: params[k] for k in ("rope_theta", "partial_rotary_factor") if k in params}
        params = {**keep, **scaling, "factor": float(scaling["factor"])}
        params.pop("original_max_position_embeddings", None)
        if scaling["rope_type"] in _ORIGINAL_KEY_TYPES:
            params["original_max_position_embeddings"] = original
        # dynamic NTK reads max_position_embeddings as the original length and scales past it
        dynamic = scaling["rope_type"] == "dynamic"
        config.max_position_embeddings = (
            original if dynamic else scaled_positions(scaling, original)
        )
    config.rope_parameters = params
    _validate(config, where)
    return before


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _validate(config: PreTrainedConfig, where: str) -> None:
    """transformers' ``validate_rope``: a missing key raises there, the rest only logs;
    both become one line here."""
    log = logging.getLogger("transformers.modeling_rope_utils")
    collect = _Collect()
    level, propagate = log.level, log.propagate
    log.addHandler(collect)
    log.setLevel(logging.WARNING)  # steep quiets transformers' logs: these it must hear
    log.propagate = False  # said once, as the error below
    try:
        config.validate_rope()
    except (KeyError, ValueError) as exc:
        collect.messages.append(str(exc).strip("'\""))
    finally:
        log.removeHandler(collect)
        log.setLevel(level)
        log.propagate = propagate
    if collect.messages:
        said = collect.messages[0].replace("`rope_parameters`", "rope parameters")
        raise ConfigError(f"model.rope_scaling ({where}): transformers refuses it: {said}")


def positions_of(config: PreTrainedConfig) -> int | None:
    """The positions a loaded model covers (dynamic NTK: factor x its original)."""
    known = getattr(config, "max_position_embeddings", None)
    if not isinstance(known, int):
        return None
    return covered_positions(known, getattr(config, "rope_parameters", None))


def loaded_context_problem(
    config: PreTrainedConfig, model: ModelSection, seq_len: int, before: int | None, where: str
) -> str | None:
    """``data.seq_len`` against the loaded model (``before``: what ``apply_rope`` returned):
    the last word, for bases whose files did not say before loading (a hub id, a random
    init); the message names the factor that would cover it."""
    if before is not None and model.rope_scaling is not None:
        return context_problem(seq_len, before, where, model.rope_scaling)
    return context_problem(seq_len, positions_of(config), where)
