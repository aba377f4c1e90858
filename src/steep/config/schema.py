"""Run configuration: one YAML file, validated before any work starts.

pydantic does the validation; this module adds what a user needs on top of it: unknown
keys are refused with the valid ones listed (a typo must never be silently ignored),
``--set a.b=value`` overrides, and errors that name the field and the allowed values.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from steep.artifacts import scores
from steep.artifacts.scores import Role
from steep.config.batch import BatchSplit, batch_split
from steep.config.context import ROPE_TYPES, RopeScaling
from steep.config.lengths import LENGTH_HELP, LengthSection
from steep.config.mixing import (
    ForgettingBudgetSection,
    PhaseSection,
    budget_problem,
    budget_set_names,
    phase_table,
    phases_problem,
)
from steep.config.strict import Strict
from steep.config.tracking import TrackSection
from steep.workspace import plain_name_problem, run_name_problem

_Strict = Strict


class RunSection(_Strict):
    name: str = "run"
    out_dir: str | None = Field(
        None, description="run directory; default STEEP_HOME/runs/<name>-<timestamp>"
    )
    seed: int = 0

    @field_validator("name")
    @classmethod
    def _one_component(cls, v: str) -> str:
        problem = run_name_problem(v)
        if problem:
            raise ValueError(problem)
        return v


def _plain(name: str, what: str) -> str:
    problem = plain_name_problem(name, what)
    if problem:
        raise ValueError(problem)
    return name


class ModelSection(_Strict):
    base: str | None = Field(
        None, description="local HF directory, a .gguf file, or a hub id (online machines only)"
    )
    gguf_file: str | None = Field(None, description="GGUF file name when `base` is a directory")
    random_init: dict[str, Any] | None = Field(
        None,
        description="build a fresh model from these config values (model_type + sizes) "
        "instead of loading `base`; for smoke tests and recipe science",
    )
    tokenizer: str | None = Field(
        None,
        description="tokenizer directory, or 'bytes' (257-token byte tokenizer); default: base's",
    )
    base_max_lr: float | None = Field(
        None, gt=0, description="the base's own pretraining peak LR; required when not in the table"
    )
    document_separator: str | None = Field(
        None, description="token put between documents; default: the tokenizer's EOS"
    )
    attention: Literal[
        "sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention"
    ] = Field(
        "sdpa", description="transformers attention kernel; flash_* need the flash-attn package"
    )
    rope_scaling: RopeScaling | None = Field(
        None,
        description="extend the base's context (Hugging Face's rope_scaling): {rope_type: "
        f"{' | '.join(ROPE_TYPES)}, factor: F, original_max_position_embeddings: N (default: "
        "the base's), and the type's own keys}; the model covers F x N positions, applied "
        "when the base loads and saved in config.json",
    )
    rope_theta: float | None = Field(
        None, gt=0, description="the RoPE base frequency; default: the base's"
    )

    @model_validator(mode="after")
    def _one_source(self) -> ModelSection:
        if self.base is None and self.random_init is None:
            raise ValueError("set model.base (HF dir, .gguf or hub id) or model.random_init")
        if self.random_init is not None and self.tokenizer is None and self.base is None:
            raise ValueError("model.random_init needs model.tokenizer (a directory or 'bytes')")
        return self


class SourceSection(_Strict):
    name: str
    role: Role | None = Field(
        None,
        description="domain (the data to learn) or general (replay); default: domain when "
        "the name starts with 'domain', else general. Used by data.domain_share and sweeps",
    )
    paths: list[str] | None = Field(None, min_length=1, description="files or folders of text")
    dataset: str | None = Field(
        None, description="a Data Hub dataset, NAME@VERSION (or NAME for the latest)"
    )
    languages: list[str] | None = Field(
        None, description="dataset only: keep documents tagged with these languages"
    )
    exclude_languages: list[str] | None = Field(
        None, description="dataset only: drop documents tagged with these languages"
    )
    weight: float = Field(1.0, gt=0, description="share of training tokens, relative to the others")
    text_field: str = "text"
    heldout_fraction: float = Field(0.05, ge=0, lt=1)
    length: LengthSection | None = Field(None, description=LENGTH_HELP)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        return _plain(v, "source name")

    @field_validator("dataset")
    @classmethod
    def _plain_dataset(cls, v: str | None) -> str | None:
        if v is not None:
            _plain(v.partition("@")[0], "dataset name")
        return v

    @model_validator(mode="after")
    def _one_origin(self) -> SourceSection:
        if (self.paths is None) == (self.dataset is None):
            raise ValueError(f"source '{self.name}': give exactly one of paths or dataset")
        if self.paths is not None and (self.languages or self.exclude_languages):
            raise ValueError(
                f"source '{self.name}': languages / exclude_languages need a dataset "
                "(its documents carry language tags); files do not"
            )
        return self


class EvalDataset(_Strict):
    """An extra eval set that is a Data Hub dataset: every document of it is evaluated."""

    dataset: str = Field(description="a Data Hub dataset, NAME@VERSION (or NAME for the latest)")

    @field_validator("dataset")
    @classmethod
    def _plain_dataset(cls, v: str) -> str:
        _plain(v.partition("@")[0], "dataset name")
        return v


class DataSection(_Strict):
    sources: list[SourceSection] = Field(min_length=1)
    eval_sets: dict[str, list[str] | EvalDataset] = Field(
        default_factory=dict,
        description="extra held-out sets, evaluated only: name -> files, or name -> "
        "{dataset: NAME@VERSION} (a Data Hub dataset)",
    )
    seq_len: int = Field(512, ge=8)
    max_epochs: float = Field(
        1.0, gt=0, description="refuse a run that would read any source more often than this"
    )
    domain_share: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="share of training tokens for the domain-role sources together (split "
        "among them by weight); the general ones get the rest. Unset: weights alone decide",
    )
    eval_roles: dict[str, Role] = Field(
        default_factory=dict,
        description="role of each extra eval set (domain or general), for sweep scoring; "
        "a set without one is reported but not scored",
    )
    phases: list[PhaseSection] = Field(
        default_factory=list,
        description="the mix on schedule: each phase's weights until its until_step or "
        "until_fraction (e.g. a final anneal on the domain); empty: one mix for the run",
    )

    @field_validator("eval_sets", "eval_roles")
    @classmethod
    def _plain_set_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name in v:
            _plain(name, "eval set name")
        return v

    @model_validator(mode="after")
    def _unique_names(self) -> DataSection:
        names = [s.name for s in self.sources] + list(self.eval_sets)
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"data source / eval set names must be unique; repeated: {dupes}")
        return self

    @model_validator(mode="after")
    def _roles_fit(self) -> DataSection:
        unknown = sorted(set(self.eval_roles) - set(self.eval_sets))
        if unknown:
            raise ValueError(
                f"data.eval_roles names {unknown}, which are not in data.eval_sets "
                f"({sorted(self.eval_sets) or 'none'})"
            )
        if self.domain_share is not None:
            roles = {source_role(s) for s in self.sources}
            missing = [r for r in ("domain", "general") if r not in roles]
            if missing:
                found = ", ".join(f"{s.name} ({source_role(s)})" for s in self.sources)
                raise ValueError(
                    f"data.domain_share={self.domain_share:g} needs at least one {missing[0]} "
                    f"source; found: {found}. Set role: {missing[0]} on a source (a source "
                    "whose name starts with 'domain' is a domain one by default)"
                )
        return self


class LoraSection(_Strict):
    """Low-rank adapters (peft's LoRA) for ``train.method: lora | qlora``."""

    rank: int = Field(16, ge=1, description="r: the adapters' rank")
    alpha: float = Field(32.0, gt=0, description="scaling = alpha / rank")
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear",
        description="module names to adapt (q_proj, ...); all-linear: every linear layer "
        "of the decoder (the output head excluded)",
    )
    embeddings: Literal["train", "freeze"] = Field(
        "train",
        description="train: the input and output embeddings train in full beside the adapters "
        "(CPT learns new tokens and their use; new rows of a vocabulary extension need it)",
    )

    @field_validator("target_modules")
    @classmethod
    def _some_targets(cls, v: list[str] | str) -> list[str] | str:
        if isinstance(v, list) and not v:
            raise ValueError("target_modules is empty: name modules, or all-linear")
        return v


class TrainSection(_Strict):
    steps: int = Field(ge=1)
    global_batch_tokens: int = Field(
        ge=8, description="tokens per optimizer step, all micro-batches"
    )
    micro_batch_size: int = Field(1, ge=1, description="sequences per forward pass")
    lr_fraction: float = Field(0.1, gt=0, le=10, description="max LR = lr_fraction x base peak LR")
    schedule: Literal["cosine", "wsd", "constant"] = "cosine"
    warmup_steps: int | None = Field(None, ge=0)
    warmup_fraction: float = Field(0.01, ge=0, le=1, description="used when warmup_steps is unset")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="floor of the decay, x max LR")
    decay_fraction: float = Field(0.2, gt=0, le=1, description="wsd: share of steps spent decaying")
    weight_decay: float = Field(0.1, ge=0)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    eps: float = Field(1e-8, gt=0)
    grad_clip: float | None = Field(1.0, gt=0)
    precision: Literal["bf16-autocast", "fp32", "bf16"] = Field(
        "bf16-autocast",
        description="bf16-autocast keeps fp32 weights; pure bf16 loses small CPT updates",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, ge=1, description="CPU threads; default: all cores")
    compile: bool = Field(False, description="torch.compile each decoder layer")
    activation_checkpointing: Literal["none", "full", "selective"] = Field(
        "none", description="recompute activations in backward: every layer, or every ac_every-th"
    )
    ac_every: int = Field(
        2, ge=1, description="selective activation checkpointing: every Nth layer"
    )
    document_mask: Literal["auto", "on", "off"] = Field(
        "auto",
        description="stop packed documents attending to each other; auto = on where a fast "
        "kernel exists (model.attention flash_attention_2/3 or flex_attention)",
    )
    loss_chunk: int | Literal["auto"] | None = Field(
        "auto",
        description="positions whose logits are made at once for the loss (their memory is "
        "chunk x vocabulary, not seq x vocabulary); auto: 256 MiB of fp32 logits a chunk; "
        "null: the whole logits (one process and FSDP2 alike)",
    )

    @field_validator("loss_chunk")
    @classmethod
    def _positive_chunk(cls, v: int | str | None) -> int | str | None:
        if isinstance(v, int) and v < 1:
            raise ValueError("loss_chunk must be at least 1 position (or auto, or null)")
        return v

    context_parallel: int = Field(
        1,
        ge=1,
        description="split each sequence over this many GPUs (torch's context_parallel); "
        "not available yet: refused above 1 with the reason; `steep plan` says how many "
        "GPUs a long data.seq_len would need",
    )
    fused_kernels: Literal["none", "liger"] = Field(
        "none", description="liger: Liger's Triton RMSNorm, SwiGLU and RoPE (CUDA, liger-kernel)"
    )
    preempt_grace_s: float = Field(
        25,
        ge=0,
        description="SIGTERM in the step loop (scancel, a preemption, a Kubernetes eviction): "
        "every rank finishes its step and checkpoints it within this many seconds, then "
        "stops (inside Kubernetes' 30 s and Slurm's KillWait); 0: stop at once, no checkpoint",
    )
    dist_timeout_s: int = Field(
        600, ge=10, description="a collective waiting longer than this fails instead of hanging"
    )
    data_wait_s: int = Field(
        86400,
        ge=1,
        description="how long other ranks wait (on a file, not a collective) while rank 0 "
        "tokenizes the sources or converts the base; pre-tokenize big data with "
        "`steep data tokenize --config` instead of raising it",
    )
    peak_tflops: float | None = Field(
        None, gt=0, description="device bf16 peak for MFU; default: known GPUs, none on CPU"
    )
    method: Literal["full", "lora", "qlora"] = Field(
        "full",
        description="full: every weight trains; lora: adapters on the frozen base (train.lora); "
        "qlora: the same on a 4-bit base (CUDA and bitsandbytes)",
    )
    lora: LoraSection = Field(default_factory=LoraSection)
    embedding_lr_ratio: float | None = Field(
        None,
        gt=0,
        le=1,
        description="LR of the input and output embeddings, x max LR; default 1 for full, "
        "0.1 for lora and qlora (Unsloth's advice: 2-10x smaller than the adapters')",
    )
    optimizer: Literal["adamw", "adamw8bit"] = Field(
        "adamw",
        description="adamw8bit: torchao's AdamW with 8-bit moments (2 bytes a parameter "
        "instead of 8; pip install torchao)",
    )
    offload: Literal["none", "cpu"] = Field(
        "none",
        description="cpu: FSDP2 keeps parameters, gradients and optimizer state in host "
        "memory and the optimizer steps there (torchrun on CUDA)",
    )
    forgetting_budget: ForgettingBudgetSection | None = Field(
        None, description="act when the general regression at an eval exceeds a bound"
    )
    embedding_warmup_steps: int = Field(
        0,
        ge=0,
        description="first K steps train only the input/output embeddings (only the rows a "
        "vocabulary extension added, when the base's steep.json names them), then all weights",
    )


AUTO_CHUNK_LOGITS = 1 << 26  # fp32 logits per chunk under loss_chunk: auto (256 MiB)


def chunk_positions(chunk: int | str | None, vocab: int) -> int | None:
    """What ``train.loss_chunk`` means in positions: ``auto`` holds 256 MiB of fp32 logits
    (512 positions at Llama 3's 128k vocabulary, 1,365 at SmolLM2's 49k), at least 256.
    Here, torch-free, so the loss (``train.forward``) and ``steep plan`` read one rule."""
    if chunk == "auto":
        return max(256, AUTO_CHUNK_LOGITS // max(vocab, 1))
    return chunk if isinstance(chunk, int) else None


class EvalSection(_Strict):
    every_steps: int = Field(100, ge=1)
    max_windows: int = Field(16, ge=1, description="fixed windows of seq_len per eval set")
    batch_size: int = Field(4, ge=1)


class CheckpointSection(_Strict):
    every_steps: int = Field(100, ge=1)
    keep_last: int = Field(2, ge=1)
    async_save: bool = Field(
        False,
        description="copy the state to host memory and write the files in a thread while "
        "training goes on (DCP async_save); state.json records the stall",
    )


class RunConfig(_Strict):
    run: RunSection = Field(default_factory=RunSection)
    model: ModelSection
    data: DataSection
    train: TrainSection
    eval: EvalSection = Field(default_factory=EvalSection)
    checkpoint: CheckpointSection = Field(default_factory=CheckpointSection)
    track: TrackSection = Field(default_factory=TrackSection)

    @model_validator(mode="after")
    def _batch_divides(self) -> RunConfig:
        split = self.batch_split()
        if not split.divides:
            raise ValueError(
                f"train.global_batch_tokens={self.train.global_batch_tokens} must be a multiple of "
                f"data.seq_len x train.micro_batch_size = {split.unit}"
            )
        return self

    @model_validator(mode="after")
    def _mix_over_time(self) -> RunConfig:
        data, train = self.data, self.train
        weights = {s.name: s.weight for s in data.sources}
        problem = phases_problem(
            data.phases, weights, train.steps, data.domain_share
        ) or budget_problem(
            train.forgetting_budget,
            eval_set_roles(self),
            {source_role(s) for s in data.sources},
        )
        if problem:
            raise ValueError(problem)
        return self

    @property
    def embedding_lr_ratio(self) -> float:
        """``train.embedding_lr_ratio``, or its default for the method."""
        ratio = self.train.embedding_lr_ratio
        if ratio is not None:
            return ratio
        return 1.0 if self.train.method == "full" else 0.1

    def batch_split(self, ranks: int = 1) -> BatchSplit:
        """The global batch on ``ranks`` ranks (``steep.config.batch``: the one arithmetic)."""
        t = self.train
        return batch_split(t.global_batch_tokens, self.data.seq_len, t.micro_batch_size, ranks)

    @property
    def grad_accum(self) -> int:
        """Micro-batches per optimizer step in one process."""
        return self.batch_split().accum

    @property
    def sequences_per_step(self) -> int:
        """Sequences in one optimizer step, all ranks."""
        return self.batch_split().per_step


def source_role(src: SourceSection) -> Role:
    """A source's role: its own ``role``, else from its name (``steep.artifacts.scores``)."""
    return scores.source_role(src.name, src.role)


def effective_weights(config: RunConfig) -> list[float]:
    """Mixture weight per source, after ``data.domain_share`` (when set) rescales the roles.

    Each role's sources keep their relative weights; the roles together get
    ``domain_share`` and ``1 - domain_share`` of the tokens.
    """
    sources, share = config.data.sources, config.data.domain_share
    weights = [s.weight for s in sources]
    if share is None:
        return weights
    totals = {"domain": 0.0, "general": 0.0}
    for s in sources:
        totals[source_role(s)] += s.weight
    target = {"domain": share, "general": 1.0 - share}
    return [s.weight / totals[source_role(s)] * target[source_role(s)] for s in sources]


def eval_set_roles(config: RunConfig) -> dict[str, Role | None]:
    """Role of every eval set the run reports: held-out splits take their source's role,
    extra eval sets take ``data.eval_roles`` (None: reported, not scored)."""
    roles: dict[str, Role | None] = {
        s.name: source_role(s) for s in config.data.sources if s.heldout_fraction > 0
    }
    for name in config.data.eval_sets:
        roles[name] = config.data.eval_roles.get(name)
    return roles


def phase_weights(config: RunConfig) -> list[tuple[str, int, list[float]]]:
    """(name, first step, weight per source) of every phase; one phase when none are set."""
    if not config.data.phases:
        return [("all", 0, effective_weights(config))]
    weights = {s.name: s.weight for s in config.data.sources}
    return phase_table(config.data.phases, weights, config.train.steps)


def budget_sets(config: RunConfig) -> list[str]:
    """The eval sets the forgetting budget reads: the named ones, else the general ones."""
    return budget_set_names(config.train.forgetting_budget, eval_set_roles(config))
