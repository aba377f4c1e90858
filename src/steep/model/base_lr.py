"""Published pretraining peak learning rates of public base models.

CPT sets its max LR as a fraction of the base's own peak (e-Llama: 10%), so the peak must
come from the model's paper or card, never from a guess. Bases whose makers did not publish
a peak are listed as ``None`` so the error can say so instead of "unknown model".
``resolve_max_lr`` turns a run config into the max LR it trains with.
"""

from __future__ import annotations

import re

from steep.config import RunConfig
from steep.errors import ConfigError, SteepError
from steep.model.basenames import base_names, lineage_peak_lr

# family-size key -> (peak LR or None, where it was published)
PEAK_LR: dict[str, tuple[float | None, str]] = {
    "llama-2-7b": (3e-4, "Llama 2 paper, Table 1"),
    "llama-2-13b": (3e-4, "Llama 2 paper, Table 1"),
    "llama-2-70b": (1.5e-4, "Llama 2 paper, Table 1"),
    "llama-3-8b": (3e-4, "Llama 3 model card"),
    "llama-3-70b": (1.5e-4, "Llama 3 model card"),
    "llama-3.1-8b": (3e-4, "Llama 3 herd paper"),
    "llama-3.1-70b": (1.5e-4, "Llama 3 herd paper"),
    "llama-3.1-405b": (8e-5, "Llama 3 herd paper"),
    "smollm2-135m": (3e-3, "SmolLM2 paper"),
    "smollm2-360m": (3e-3, "SmolLM2 paper"),
    "smollm2-1.7b": (5e-4, "SmolLM2 paper"),
    "pythia-160m": (6e-4, "Pythia paper, Table 1"),
    "pythia-410m": (3e-4, "Pythia paper, Table 1"),
    "pythia-1b": (3e-4, "Pythia paper, Table 1"),
    "pythia-1.4b": (2e-4, "Pythia paper, Table 1"),
    "pythia-2.8b": (1.6e-4, "Pythia paper, Table 1"),
    "pythia-6.9b": (1.2e-4, "Pythia paper, Table 1"),
    "pythia-12b": (1.2e-4, "Pythia paper, Table 1"),
    "olmo-1b": (4e-4, "OLMo paper"),
    "olmo-7b": (3e-4, "OLMo paper"),
}

# families whose makers did not publish a pretraining peak LR
UNPUBLISHED = ("llama-3.2", "mistral", "mixtral", "qwen2", "qwen2.5", "qwen3", "gemma-2", "gemma2")

# suffixes that mark a post-trained or repackaged variant of the same pretraining run
_VARIANT = re.compile(
    r"(-(instruct|chat|hf|base|it|sft|dpo|deduped|v\d+(\.\d+)?))+$|(-[qf]\d+(_[a-z0-9]+)*)$"
)


class UnknownBaseLR(SteepError, ValueError):
    """No published peak LR for this base: the user must give model.base_max_lr."""


def normalise(name: str) -> str:
    """'HuggingFaceTB/SmolLM2-135M-Instruct' -> 'smollm2-135m'; 'Meta-Llama-3.1-8B' -> 'llama-3.1-8b'."""
    key = name.strip().rstrip("/").split("/")[-1].lower()
    key = re.sub(r"\.gguf$", "", key)
    key = re.sub(r"[\s_]+", "-", key)
    key = key.removeprefix("meta-")
    key = re.sub(r"\.(q\d.*|f16|f32|bf16)$", "", key)
    key = re.sub(r"^llama(\d)", r"llama-\1", key)
    prev = None
    while prev != key:
        prev, key = key, _VARIANT.sub("", key)
    return key


def lookup_peak_lr(*names: str) -> tuple[float, str, str]:
    """Return (peak LR, matched key, source) for the first name found in the table."""
    keys = [normalise(n) for n in names if n]
    for key in keys:
        if key in PEAK_LR and PEAK_LR[key][0] is not None:
            lr, source = PEAK_LR[key]
            return float(lr), key, source
    for key in keys:
        for family in UNPUBLISHED:
            if key.startswith(family):
                raise UnknownBaseLR(
                    f"{family} did not publish its pretraining peak LR, so steep will not guess "
                    f"one for '{key}': set model.base_max_lr to the peak you trust"
                )
    tried = ", ".join(repr(k) for k in keys) or "(no name)"
    raise UnknownBaseLR(
        f"no published peak LR known for {tried}: set model.base_max_lr "
        f"(known bases: {', '.join(sorted(PEAK_LR))})"
    )


def resolve_max_lr(config: RunConfig) -> tuple[float, str]:
    """(max LR, where the peak came from): ``train.lr_fraction`` x the base's peak LR.

    The peak is, first found: ``model.base_max_lr``; the ``base_peak_lr`` a steep-made
    base's steep.json carries (e.g. a vocabulary extension); the published table above.
    Training, ``steep validate``, sweeps, the studio and ``steep launch`` all resolve it here
    (through ``steep.train.preflight``), so the LR a run trains with is the one they showed.
    """
    if config.model.base_max_lr is not None:
        peak, source = config.model.base_max_lr, f"model.base_max_lr {config.model.base_max_lr:g}"
    elif config.model.random_init is not None:
        raise ConfigError("a random_init model has no published peak LR: set model.base_max_lr")
    elif (carried := lineage_peak_lr(config.model)) is not None:
        peak, source = carried
    else:
        peak, source = published_peak(*base_names(config.model))
    return config.train.lr_fraction * peak, source


def published_peak(*names: str) -> tuple[float, str]:
    """(peak LR, 'key peak X (source)') from the table, for the first name found in it."""
    peak, key, ref = lookup_peak_lr(*names)
    return peak, f"{key} peak {peak:g} ({ref})"
