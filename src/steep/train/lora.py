"""LoRA and QLoRA continued pretraining: adapters on a frozen base, embeddings trained in full.

Why: full CPT of an 8B model needs ~16 bytes a parameter (fp32 weights, gradients, two
AdamW moments), ~128 GB before activations. With ``train.method: lora`` the base is frozen
and only low-rank adapters train (peft's LoRA on every linear layer of the decoder by
default); ``qlora`` also stores the frozen base in 4 bits (bitsandbytes, CUDA). CPT teaches
new tokens and their use, so the input and output embeddings train in full beside the
adapters (``train.lora.embeddings: train``, what Unsloth's CPT recipe does with
``modules_to_save``), at ``train.embedding_lr_ratio`` x the max LR; the rows a vocabulary
extension added are among them.

The embeddings train in place (``requires_grad``) rather than as peft's copies: a tied head
stays tied and the model has one embedding matrix, not two. Under bf16 autocast the frozen
linear weights are stored in bf16: autocast casts them to bf16 for every matmul anyway, so
the results are the same and the frozen base takes half the memory (one process only: FSDP2
needs one dtype per sharded group, and its mixed precision casts them for compute).

The result is saved twice: a merged plain HF model (the base reloaded as training loaded it,
the adapters and embeddings put in, ``merge_and_unload``) and the adapter beside it, with
its own card (``PeftModel.from_pretrained`` on the same base gives the same logits).
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from steep.artifacts.atomic import aside_dir, replace_dir, umask_permissions
from steep.config import RunConfig
from steep.errors import ConfigError, SteepError
from steep.model.io import LoadedBase, load_base
from steep.train.forward import embedding_weights
from steep.workspace import ADAPTER_DIR


class MethodError(SteepError):
    """A training method asked for where it cannot run; says what is missing."""


def check_method(config: RunConfig, device: torch.device, world: int = 1) -> None:
    """Refuse what cannot run before any weights load: peft, CUDA and bitsandbytes for qlora."""
    method = config.train.method
    if method == "full":
        if config.train.lora != type(config.train.lora)():
            print("note: train.lora is set but train.method is full: every weight trains")
        return
    if importlib.util.find_spec("peft") is None:
        raise MethodError(
            f"train.method={method} needs peft: pip install 'steep[lora]' (or pip install peft)"
        )
    if method != "qlora":
        return
    if device.type != "cuda":
        raise MethodError(
            f"train.method=qlora needs a CUDA device (bitsandbytes' 4-bit kernels); this run "
            f"is on {device.type}: use train.method=lora"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise MethodError("train.method=qlora needs bitsandbytes: pip install bitsandbytes")
    if world > 1:
        raise MethodError(
            "train.method=qlora runs on one GPU (FSDP2 does not shard bitsandbytes' 4-bit "
            "weights): use train.method=lora to shard adapters and base over several"
        )
    if config.model.random_init is not None:
        raise MethodError(
            "train.method=qlora quantizes a pretrained base as it loads; model.random_init "
            "has none: use train.method=lora"
        )


def quantized_load() -> dict[str, Any]:
    """from_pretrained's arguments for a 4-bit NF4 base computing in bf16 (QLoRA's recipe)."""
    from transformers import BitsAndBytesConfig  # deferred: qlora only

    return {
        "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        ),
        "device_map": {"": torch.cuda.current_device()},
    }


def linear_names(model: torch.nn.Module) -> list[str]:
    """The last name of every linear layer (``q_proj``, ``down_proj``, ``lm_head``, ...)."""
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) or type(module).__name__ == "Linear4bit"
    }
    return sorted(names)


def lora_config(config: RunConfig, model: torch.nn.Module) -> Any:
    """peft's LoraConfig for the run; names that match no linear layer are an error."""
    from peft import LoraConfig  # deferred: lora and qlora only (the optional peft)

    lora = config.train.lora
    targets = lora.target_modules
    exists = linear_names(model)
    if not exists:
        raise ConfigError(
            f"train.method={config.train.method}: {type(model).__name__} has no linear "
            "layers to adapt"
        )
    if isinstance(targets, list):
        missing = [t for t in targets if t not in exists]
        if missing:
            raise ConfigError(
                f"train.lora.target_modules: no linear layer named {', '.join(missing)} in "
                f"{type(model).__name__}; its linear layers are: {', '.join(exists)}"
            )
    return LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )


@dataclass
class Adapted:
    """What ``apply_method`` did, for the log, the lineage and the model card."""

    model: torch.nn.Module
    method: dict[str, Any]

    def describe(self) -> str:
        m = self.method
        return (
            f"{m['name']}: rank {m['rank']}, alpha {m['alpha']:g} on "
            f"{', '.join(m['target_modules'])}; embeddings {m['embeddings']}; "
            f"{m['trainable_params']:,} of {m['total_params']:,} parameters train "
            f"({m['trainable_params'] / m['total_params']:.2%})"
        )


def apply_method(
    model: torch.nn.Module,
    config: RunConfig,
    precision: str,
    sharded: bool,
    first_new_id: int | None = None,
) -> Adapted | None:
    """Wrap ``model`` in LoRA adapters (``train.method`` lora or qlora); None for full.

    ``first_new_id``: the first row a vocabulary extension added to the base (its steep.json).
    """
    if config.train.method == "full":
        return None
    if first_new_id is not None and config.train.lora.embeddings == "freeze":
        raise ConfigError(
            f"the base's vocabulary extension added rows {first_new_id}+ to the embeddings; "
            "with train.lora.embeddings=freeze they would never learn: set it to train"
        )
    from peft import get_peft_model, prepare_model_for_kbit_training  # deferred: optional peft

    if config.train.method == "qlora":  # norms in fp32, inputs that require grad
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    peft_model = get_peft_model(model, lora_config(config, model))
    if config.train.lora.embeddings == "train":
        for w in embedding_weights(peft_model):
            w.requires_grad_(True)
    if precision == "bf16-autocast" and not sharded and config.train.method == "lora":
        for module in peft_model.modules():
            if isinstance(module, torch.nn.Linear) and not module.weight.requires_grad:
                module.weight.data = module.weight.data.to(torch.bfloat16)
    total = sum(p.numel() for p in peft_model.parameters())
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    lora = config.train.lora
    method = {
        "name": config.train.method,
        "rank": lora.rank,
        "alpha": lora.alpha,
        "dropout": lora.dropout,
        "target_modules": sorted(
            {name.rsplit(".", 1)[-1] for name in peft_model.peft_config["default"].target_modules}
        ),
        "embeddings": lora.embeddings,
        "embedding_lr_ratio": config.embedding_lr_ratio,
        "trainable_params": trainable,
        "total_params": total,
        "adapter": ADAPTER_DIR,  # in the run folder, beside the merged model/
    }
    return Adapted(peft_model, method)


def trainable_state(weights: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, Any]:
    """The trained tensors of a full state dict: adapters and, when trained, embeddings."""
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v for k, v in weights.items() if k in names}


def merge(
    fresh: LoadedBase,
    config: RunConfig,
    trained: dict[str, torch.Tensor],
    adapter_dir: Path,
    card: str,
) -> torch.nn.Module:
    """The merged plain model: ``fresh`` (the base as training loaded it, full precision)
    with the adapters and embeddings of ``trained``; writes the adapter to ``adapter_dir``."""
    from peft import get_peft_model  # deferred: lora and qlora only (the optional peft)

    peft_model = get_peft_model(fresh.model, lora_config(config, fresh.model))
    missing = set(trained) - set(peft_model.state_dict())
    if missing:
        raise SteepError(f"adapter weights with no place in the base: {sorted(missing)[:5]}")
    peft_model.load_state_dict(trained, strict=False)
    keep_embeddings = config.train.lora.embeddings == "train"
    adapter_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = aside_dir(adapter_dir)
    try:
        peft_model.save_pretrained(tmp, save_embedding_layers=keep_embeddings)
        fresh.tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(card, encoding="utf-8")
        umask_permissions(tmp)
        replace_dir(tmp, adapter_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return peft_model.merge_and_unload()


def adapter_card(method: dict[str, Any], base: str, run_name: str) -> str:
    """The adapter's own README: what it is, what it needs, how to load it."""
    embeddings = (
        "The input and output embeddings were trained too and are saved in the adapter "
        "(peft loads them onto the base)."
        if method["embeddings"] == "train"
        else "The embeddings were frozen."
    )
    return (
        f"# {run_name}: {method['name']} adapter\n\n"
        f"Continued-pretraining adapter made by steep (`train.method: {method['name']}`), "
        f"rank {method['rank']}, alpha {method['alpha']:g}, dropout {method['dropout']:g}, on "
        f"{', '.join(method['target_modules'])}: {method['trainable_params']:,} trained "
        f"parameters of {method['total_params']:,}. {embeddings}\n\n"
        f"Base model: `{base}`. The merged model (base plus adapter, plain Hugging Face "
        "format) is the `model/` folder beside this one; use the adapter alone to keep one "
        "base and several adapters:\n\n"
        "```python\n"
        "from transformers import AutoModelForCausalLM\n"
        "from peft import PeftModel\n\n"
        f'base = AutoModelForCausalLM.from_pretrained("{base}")\n'
        'model = PeftModel.from_pretrained(base, "PATH/TO/THIS/FOLDER")\n'
        "```\n"
    )


def merged_model(
    adapted: Adapted, config: RunConfig, home: Path, trained: dict[str, Any], run_dir: Path
) -> torch.nn.Module:
    """The plain merged model; the adapter (and its card) goes to ``run_dir/adapter``."""
    fresh = load_base(config.model, home, seed=config.run.seed)
    card = adapter_card(adapted.method, str(config.model.base or "random init"), config.run.name)
    return merge(fresh, config, trained, run_dir / ADAPTER_DIR, card)
