"""The arithmetic of ``steep plan``: bytes per device and FLOPs of a run; torch-free.

Memory is what the loop holds at the largest moment of a step (``Memory.phases``: the
loss's forward, the start of backward, a recomputed layer, all gradients, evaluation), over
the static weights and optimizer state:

- weights: fp32 master weights (4 B a parameter; 2 B under ``precision: bf16``); LoRA as
  ``steep.train.lora`` stores it: under bf16 autocast on one device the frozen linears in
  bf16, the rest fp32; QLoRA's decoder linears in NF4 (0.5 B + double-quantized scales),
  its other parameters fp32; under FSDP2 everything fp32;
- gradients: one per trainable parameter in the master dtype;
- optimizer: AdamW's two moments (8 B a parameter; 4 B in bf16), torchao's 8-bit AdamW
  2 B plus an fp32 scale per 256;
- under FSDP2 (more than one GPU, or ``offload: cpu``) all three are sharded over the
  GPUs; ``offload: cpu`` moves them to host memory (reported as host memory);
- activations saved for backward, per token and layer of a Llama block, counted from the
  tensors HF's Llama keeps (tests/test_plan.py counts them with saved-tensor hooks): under
  bf16 autocast the residual stream and both RMSNorms stay fp32 (x, rsqrt and x·rsqrt:
  8h + 4 each), each projection saves its own bf16 cast of its input (q, k, v: 6h; gate,
  up: 4h), attention keeps q and k after RoPE, v and its output (o_proj's input, the same
  storage) and a log-sum-exp per head (2 B x (2 q + 2 kv widths) + 4 x heads), the MLP
  its gate, SiLU, up and product (8i). SDPA and flash attention keep no seq x seq scores
  (eager does: heads x seq x 6 B). This is the count of Korthikanti et al. (2022),
  "Reducing Activation Recomputation in Large Transformer Models" (34·s·b·h per GPT layer),
  redone for this block: 26h + 4q + 4kv + 8i + 4a + 8 bytes a token. A checkpointed layer
  keeps only its input (4h) and is whole again while it is recomputed. LoRA: a frozen
  linear keeps no input (autograd saves it only for a weight gradient) and a frozen norm
  no x·rsqrt, while each adapter's A keeps its own copy of the input and its r-wide output;
- the loss: 12 B per position and vocabulary entry at backward's start (the fp32
  log-softmax saved, its gradient and the logits' gradient; 10 B in forward: bf16 logits,
  their fp32 copy, the log-softmax), over micro x seq positions, or one chunk with
  ``train.loss_chunk`` (one device and FSDP2 alike);
- transient: on one device under autocast, the bf16 copy of every fp32 matmul weight that
  autocast caches in forward (those of checkpointed layers are dropped when it ends); under
  FSDP2 the gathered bf16 root (embeddings, head) and three layers, and the unsharded
  gradients of two layers and, at the end, of the root (bf16 as computed plus their fp32
  cast for the reduce-scatter: 6 B a parameter). FSDP2's mixed precision also makes the
  residual stream bf16 (its activations count as ``precision: bf16``'s);
- evaluation (no gradients, ``eval.batch_size`` sequences): the copies, one layer's
  activations and 10 B per logit.

FLOPs per token are ``steep.train.flops``'s model FLOPs (6 x matmul parameters + 12 x
layers x q width x seq); LoRA computes no weight gradient for the frozen base (4 x instead
of 6 x, plus 6 x the adapters). The hardware also runs the forward of checkpointed layers
again, and the chunked loss's head.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from steep.config import RunConfig
from steep.config.schema import LoraSection, chunk_positions
from steep.plan.flops import model_flops_per_token
from steep.plan.shapes import Shape

NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # bitsandbytes NF4, double-quantized absmax
ADAM8_BYTES = 2 + 2 * 4 / 256  # torchao AdamW8bit: two 1-byte moments, fp32 scale per 256


@dataclass
class Memory:
    """Bytes per device: the static state, the parts of the peak, and the moments of a step
    (``phases``, bytes over the static weights and optimizer state)."""

    weights: float = 0.0
    gradients: float = 0.0
    optimizer: float = 0.0
    activations: float = 0.0  # saved for backward, one micro-batch (+ a recomputed layer)
    activations_no_ac: float = 0.0  # the same without activation checkpointing
    activations_full_ac: float = 0.0  # ... and with every layer checkpointed
    logits: float = 0.0  # the loss's, at backward's start
    transient: float = 0.0  # autocast's bf16 weight copies, or what FSDP2 gathers
    host: float = 0.0  # offloaded to CPU memory, per GPU
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def static(self) -> float:
        return self.weights + self.optimizer

    @property
    def train_peak(self) -> float:
        return self.static + max(v for k, v in self.phases.items() if k != "evaluation")

    @property
    def peak(self) -> float:
        return self.static + max(self.phases.values())

    @property
    def peak_phase(self) -> str:
        return max(self.phases, key=lambda k: self.phases[k])


# --- memory --------------------------------------------------------------------------------


def activation_precision(config: RunConfig, gpus: int) -> str:
    """What the activations are kept in: under FSDP2's mixed precision the parameters are
    gathered in bf16, so the embeddings' output and the residual stream are bf16 too (as
    under ``precision: bf16``); on one device autocast leaves them fp32."""
    precision = config.train.precision
    return "bf16" if precision == "bf16-autocast" and fsdp2(config, gpus) else precision


def _sizes(precision: str) -> tuple[int, int]:
    """(bytes of a saved activation, of the residual stream) for a precision."""
    return {"bf16-autocast": (2, 4), "fp32": (4, 4), "bf16": (2, 2)}[precision]


def norm_bytes(h: int, precision: str, trains: bool = True, shared: bool = True) -> int:
    """What an RMSNorm saves per token: x in fp32 and its rsqrt; x·rsqrt when the norm's
    weight trains (fp32, bf16 under ``precision: bf16``); in fp32 and bf16 also the
    weighted output when a consumer saves it (``shared``: autocast's linears save casts)."""
    normed = (2 if precision == "bf16" else 4) * h if trains else 0
    output = {"bf16-autocast": 0, "fp32": 4 * h, "bf16": 2 * h}[precision] if shared else 0
    return 4 * h + 4 + normed + output


def layer_activation_bytes(
    shape: Shape,
    precision: str,
    seq: int,
    attention: str,
    lora: LoraSection | None = None,
    fp32_adapters: bool = False,
    cpu: bool = False,
) -> float:
    """Bytes one decoder layer saves for backward, per token (the module docstring).

    ``lora``: the frozen base saves no input for a weight gradient, and its norms keep no
    x·rsqrt; each adapter's A saves its own cast of the input (under autocast, o_proj's is
    a copy: peft casts it to fp32 first) and its r-wide output. ``fp32_adapters`` (peft's
    default on a bf16 base, ``precision: bf16``) or dropout: each A saves its own copy.
    ``cpu``: dropout keeps an fp32 noise tensor (4 B an element), not CUDA's 1-byte mask.
    """
    e, _ = _sizes(precision)
    h, q, kv, heads = shape.hidden, shape.q_dim, shape.kv_dim, shape.heads
    inter = shape.intermediate * shape.active_experts
    linears = shape.linears()
    if lora is None:
        saves = dict.fromkeys(linears, True)  # every linear saves its input
    else:
        targets = linears if lora.target_modules == "all-linear" else lora.target_modules
        saves = {n: n in targets for n in linears}
    # adapters that save their own copy of the input (an fp32 cast, or dropout's output),
    # so the tensors the base would share are not kept (autocast's casts are copies anyway)
    own = lora is not None and precision != "bf16-autocast" and (fp32_adapters or lora.dropout > 0)
    qkv = sum(saves[n] for n in ("q_proj", "k_proj", "v_proj"))
    mlp_in = sum(saves.get(n, False) for n in ("gate_proj", "up_proj"))
    out = norm_bytes(h, precision, lora is None, qkv > 0 and not own)
    out += norm_bytes(h, precision, lora is None, mlp_in > 0 and not own)
    if precision == "bf16-autocast":  # each linear saves its own bf16 cast of the input
        out += (qkv + mlp_in) * 2 * h
    # q and k after RoPE, v, the output (o_proj's input, the same storage), log-sum-exp
    out += e * (2 * q + 2 * kv) + 4 * heads
    if attention == "eager":  # the softmax's fp32 output and its cast for the matmul
        out += heads * seq * (4 if e == 4 else 6)
    # SiLU's input, its output and up's (the product's inputs), the product (down's input)
    out += e * inter * ((3 if shape.gated else 1) + (saves["down_proj"] and not own))
    if lora is not None:
        adapted = [n for n, saved in saves.items() if saved]
        copy = 4 if fp32_adapters else e
        out += copy * lora.rank * len(adapted)  # each A's output
        if own:
            out += sum(copy * linears[n][0] for n in adapted)
        elif precision == "bf16-autocast" and saves["o_proj"]:
            out += 2 * q
        if lora.dropout > 0:  # its mask (CUDA) or noise (CPU) per adapter input element
            out += (4 if cpu else 1) * sum(linears[n][0] for n in adapted)
    return out


def _per_layer(config: RunConfig, shape: Shape, gpus: int, cpu: bool) -> float:
    """``layer_activation_bytes`` for the run's precision, method and device."""
    t = config.train
    lora = None if t.method == "full" else t.lora
    precision = activation_precision(config, gpus)
    fp32_adapters = t.precision == "bf16" and lora is not None
    return layer_activation_bytes(
        shape, precision, config.data.seq_len, config.model.attention, lora, fp32_adapters, cpu
    )


def checkpointed_layers(mode: str, every: int, layers: int) -> int:
    """As ``steep.train.parallel.apply_activation_checkpointing`` wraps them."""
    if mode == "none":
        return 0
    return layers if mode == "full" else sum(1 for i in range(layers) if i % every == every - 1)


def fsdp2(config: RunConfig, gpus: int) -> bool:
    """FSDP2: more than one GPU, or CPU offload (FSDP2's)."""
    return gpus > 1 or config.train.offload == "cpu"


def activation_bytes(
    config: RunConfig, shape: Shape, mode: str, gpus: int = 1, cpu: bool = False
) -> tuple[float, float]:
    """(saved for backward by one micro-batch, one layer's while it is recomputed) under
    ``mode`` of activation checkpointing."""
    t, seq = config.train, config.data.seq_len
    precision = activation_precision(config, gpus)
    per_layer = _per_layer(config, shape, gpus, cpu)
    _, residual = _sizes(precision)
    wrapped = checkpointed_layers(mode, t.ac_every, shape.layers)
    per_token = (shape.layers - wrapped) * per_layer + wrapped * residual * shape.hidden
    per_token += norm_bytes(shape.hidden, precision, t.method == "full")  # the final norm
    if precision == "bf16-autocast":  # the head's input: its bf16 cast, or the fp32
        chunked = chunk_positions(t.loss_chunk, shape.vocab)
        per_token += (4 if chunked else 2) * shape.hidden  # hidden states chunks read
    tokens = seq * t.micro_batch_size
    return per_token * tokens, (per_layer * tokens if wrapped else 0.0)


def _adapters(config: RunConfig, shape: Shape) -> tuple[int, list[str]]:
    """LoRA parameters (rank x (in + out) per adapted linear) and target names not found."""
    lora = config.train.lora
    linears = shape.linears()
    targets = list(linears) if lora.target_modules == "all-linear" else lora.target_modules
    unknown = [t for t in targets if t not in linears]
    size = {t: lora.rank * sum(linears[t]) for t in targets if t in linears}
    mlp = sum(v for t, v in size.items() if t in ("gate_proj", "up_proj", "down_proj"))
    return shape.layers * (sum(size.values()) + (shape.experts - 1) * mlp), unknown


def _weights(config: RunConfig, shape: Shape, sharded: bool) -> tuple[float, int, float, float]:
    """(weight bytes, trainable parameters, autocast's bf16 copies of one layer, and of the
    head) as steep.train.lora stores them: one process under bf16 autocast keeps LoRA's
    frozen linears in bf16 (nothing to copy); FSDP2 keeps one dtype and casts them itself;
    QLoRA's parameters that are not 4-bit are fp32."""
    t = config.train
    master = 2 if t.precision == "bf16" else 4
    copies = 2 if t.precision == "bf16-autocast" and not sharded else 0
    head = 0 if shape.tied else shape.embedding
    linears = shape.layer_params() - 2 * shape.hidden  # one decoder layer's matmuls
    if t.method == "full":
        return shape.params() * master, shape.params(), copies * linears, copies * shape.embedding
    adapters, _ = _adapters(config, shape)
    embeddings = shape.embedding + head if t.lora.embeddings == "train" else 0
    frozen_linears = shape.layers * linears + (head if not embeddings else 0)
    rest = shape.params() - embeddings - frozen_linears  # norms, a frozen input embedding
    if t.method == "qlora":  # the head is not quantized
        frozen = shape.layers * linears * NF4_BYTES + (shape.params() - embeddings) * 4
        frozen -= shape.layers * linears * 4
    elif copies:
        frozen = frozen_linears * 2 + rest * 4
    else:
        frozen = (shape.params() - embeddings) * master
    fp32_head = bool(embeddings) or t.method == "qlora"
    layer_copy = copies * adapters / shape.layers
    if t.method == "qlora":  # a 4-bit linear is dequantized to bf16 for its matmul
        layer_copy += 2 * max(a * b for a, b in shape.linears().values())
    head_copy = copies * shape.embedding if fp32_head else 0
    return frozen + (adapters + embeddings) * master, adapters + embeddings, layer_copy, head_copy


def memory(
    config: RunConfig, shape: Shape, gpus: int, notes: list[str], cpu: bool = False
) -> Memory:
    """The memory of ``config`` per device on ``gpus`` devices (``cpu``: the CPU's)."""
    t = config.train
    sharded = fsdp2(config, gpus)
    master = 2 if t.precision == "bf16" else 4
    opt_bytes = ADAM8_BYTES if t.optimizer == "adamw8bit" else 2 * master
    if t.method != "full" and (unknown := _adapters(config, shape)[1]):
        notes.append(f"train.lora.target_modules {unknown}: not in a Llama block, not counted")
    weights, trainable, layer_copy, head_copy = _weights(config, shape, sharded)
    grads, opt = trainable * master, trainable * opt_bytes
    head_trained = t.method == "full" or t.lora.embeddings == "train"
    head_grad = shape.embedding * master if head_trained else 0
    wrapped = checkpointed_layers(t.activation_checkpointing, t.ac_every, shape.layers)
    layer = shape.layer_params()
    if sharded:  # gathered in bf16: the root (embeddings, head) all step, three layers
        gathered, reduce = (4 if t.precision == "fp32" else 2), (2 if t.precision == "bf16" else 4)
        root = shape.params() - shape.layers * layer
        held = kept = gathered * root + 3 * gathered * layer
        # an unsharded gradient comes in the gathered dtype and is cast for the reduction
        unsharded = gathered + (reduce if reduce != gathered else 0)
        if t.method == "full":
            layer_grads, root_grads = layer, root
        else:  # LoRA: only the adapters and the embeddings have gradients
            layer_grads = _adapters(config, shape)[0] / shape.layers
            root_grads = root - shape.hidden if head_trained else 0
        in_flight = 2 * unsharded * layer_grads  # two layers' gradients, reduce-scattering
        at_end = unsharded * root_grads  # the root's, reduce-scattered last
        weights, grads, opt = weights / gpus, grads / gpus, opt / gpus
    else:  # autocast caches every copy in forward; a checkpointed layer's are not saved
        held = shape.layers * layer_copy + head_copy
        kept = (shape.layers - wrapped) * layer_copy + head_copy
        in_flight, at_end = layer_copy, 0.0
    on_device = 0.0 if t.offload == "cpu" else grads  # offload keeps them on the host
    carried = on_device if micro_batches(config, gpus) > 1 else 0.0  # accumulating
    chunk = chunk_positions(t.loss_chunk, shape.vocab)
    seq = config.data.seq_len
    positions = t.micro_batch_size * seq
    logits = 12 * shape.vocab * (min(chunk, positions) if chunk else positions)
    several = bool(chunk) and chunk < positions  # chunks: the head's gradient made in the first
    stored, recompute = activation_bytes(config, shape, t.activation_checkpointing, gpus, cpu)
    eval_positions = config.eval.batch_size * seq
    eval_logits = 10 * shape.vocab * (min(chunk, eval_positions) if chunk else eval_positions)
    per_layer = _per_layer(config, shape, gpus, cpu)
    phases = {
        "forward": carried + stored + held + logits * 10 / 12,
        # the head's gradient is made once one chunk's logits are gone, the rest add to it
        "loss backward": carried + stored + kept + logits + (head_grad if several else 0),
        "gradients": on_device + at_end + (held if sharded else 0),
        "evaluation": held + per_layer * eval_positions + eval_logits,
    }
    if wrapped:
        phases["recompute"] = carried + stored + recompute + kept + in_flight + head_grad
    mem = Memory(
        weights=weights,
        gradients=grads,
        optimizer=opt,
        activations=stored + recompute,
        activations_no_ac=sum(activation_bytes(config, shape, "none", gpus, cpu)),
        activations_full_ac=sum(activation_bytes(config, shape, "full", gpus, cpu)),
        logits=logits,
        transient=held,
        phases=phases,
    )
    if t.offload == "cpu":
        mem.host = mem.weights + mem.gradients + mem.optimizer
        mem.weights = mem.gradients = mem.optimizer = 0.0
    return mem


def chunk_in_use(config: RunConfig, shape: Shape) -> int | None:
    """Positions whose logits exist at once, when fewer than a micro-batch's."""
    chunk = chunk_positions(config.train.loss_chunk, shape.vocab)
    micro = config.train.micro_batch_size * config.data.seq_len
    return chunk if chunk and chunk < micro else None


def micro_batches(config: RunConfig, gpus: int) -> int:
    """Micro-batches per device and optimizer step (at least one)."""
    return max(1, config.batch_split(gpus).accum)


# --- FLOPs ---------------------------------------------------------------------------------


def flops_per_token(config: RunConfig, shape: Shape) -> tuple[float, float]:
    """(model FLOPs, hardware FLOPs) per trained token; see the module docstring."""
    t, seq = config.train, config.data.seq_len
    matmul = shape.matmul_params()
    if t.method == "full":
        trained, frozen = float(matmul), 0.0
    else:  # the frozen base's matmuls; the adapters and, when trained, the head's weight
        adapters, _ = _adapters(config, shape)
        head = shape.embedding if t.lora.embeddings == "train" else 0
        trained, frozen = adapters + head, matmul - head
    model = model_flops_per_token(trained, frozen, shape.layers, shape.q_dim, seq)
    wrapped = checkpointed_layers(t.activation_checkpointing, t.ac_every, shape.layers)
    per_layer_fwd = 2 * (matmul - shape.embedding) / shape.layers + 4 * shape.q_dim * seq
    recompute = wrapped * per_layer_fwd
    if chunk_positions(t.loss_chunk, shape.vocab):
        recompute += 2 * shape.embedding  # the head again, chunk by chunk, in backward
    return model, model + recompute


def trainable_params(config: RunConfig, shape: Shape) -> int:
    return _weights(config, shape, False)[1]


def generation_bytes(shape: Shape, positions: int, dtype_bytes: int = 4) -> float:
    """What generating up to ``positions`` tokens holds on one device (``steep eval
    --prompts``, the studio's generate box): the weights in the eval's dtype (float32 by
    default: 4 B), the KV cache (keys and values of every layer, every position) and one
    position's fp32 logits with their softmax."""
    weights = shape.params() * dtype_bytes
    kv_cache = 2 * shape.layers * shape.kv_dim * positions * dtype_bytes
    return weights + kv_cache + 2 * 4 * shape.vocab
