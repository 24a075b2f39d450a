"""GPT-2 with LoRA, computing what microsoft/LoRA examples/NLG/src/model.py computes.

No dropout in the backbone (only on the LoRA branch input), tanh GELU and two-pass LayerNorm
written out, fused q/k/v projection, attention written out, LM head tied to the token embedding.
Parameters carry the canonical OpenAI GPT-2 names (`wte.weight`, `h.0.attn.c_attn.weight`, ...,
`h.0.attn.c_attn.lora_A`), so loading is a key check plus a copy; there are no buffers (in Jittor every
Var attribute not starting with "_" is a parameter, so the model keeps no other Var).

The Jittor mirror of NLG_pytorch/src/model.py: the same classes and lines, with `execute` for `forward`.
LayerNorm and GELU are written out because jt.nn's are the E[x^2] - E[x]^2 and erf forms, softmax and
log_softmax because jt.nn's differentiate through their max shift; `train()` / `eval()` only switch LoRA
dropout, as torch's do (Jittor's would also stop and restart gradients).

Batched decoding over prompts of different lengths uses LEFT padding: `left_pad[b]` pad tokens
precede row b's prompt. Its position ids start at 0 at the first real token, and pad keys are
masked in every later step too, so each row computes exactly what it would alone.

    model = GPT2LMModel(config, lora)
    model.load_weights({**init_gpt2_weights(config, seed), **init_lora_weights(config, lora, seed)})
    hidden, presents = model(input_ids)                      # training: loss(hidden, target, mask)
    hidden, past = model(prompt_ids, left_pad=n_pad)          # decoding: logits(hidden[:, -1]), then
    hidden, past = model(next_ids[:, None], past=past, left_pad=n_pad)   # one token per step
    hidden, cache = model(prompt_ids, past=KVCache(rows, max_len), left_pad=n_pad)   # or: a preallocated
    hidden, cache = model(next_ids[:, None], past=cache, left_pad=n_pad)  # cache, written in place

The paths of NLG_pytorch/src/model.py, as far as Jittor has them: attention is always written out (Jittor
1.3.11 has no fused attention: see Attention.use_sdpa), and the key/value cache is a KVCache (written with
setitem) or the (k, v) pairs that each step concatenates to. tests/NLG_jittor/test_fast_paths.py holds them
to each other.

`pick_device(args.device)` is where both gpt2_ft.py and gpt2_beam.py decide the device the model runs on.
"""
import math

import cpu_kernels
import numpy as np

from jittor_env import GPU_AVAILABLE, jt
from lora import LoRAConv1D
from lora_nlg.checkpoints.tensor_files import check_shapes
from lora_nlg.model.config import LoRAConfig
from lora_nlg.util.flags import DeviceError, matmul_precision
from lora_nlg.util.ranks import ONE_PROCESS, device_name

nn = jt.nn

MASKED_SCORE = -1e10  # the reference's fill: exp() gives exactly 0, and a row with no visible key stays finite
LOSS_EPS = 1e-4  # the reference divides the masked loss sum by mask.sum() + 1e-4
FLOAT16_LOWEST = -65504.0  # float16's lowest finite value (masked_score)
TANH_SATURATED = 10.0  # |z| beyond which float32 (and float16) tanh(z) is exactly +-1 (gelu)
ATTENTION_PATHS = ("auto", "sdpa", "reference")  # GPT2LMModel(attention=...): see Attention.use_sdpa


def masked_score(dtype):
    """The fill of blocked attention scores in `dtype`: MASKED_SCORE where the dtype holds it (float32 and
    bfloat16: the reference's numbers, bit for bit), else the dtype's lowest finite value (float16 autocast:
    -65504, since -1e10 overflows there and -inf would make a row with no visible key nan). Written out rather
    than np.finfo's, which warns under the flush-to-zero of Jittor's -Ofast kernels."""
    return FLOAT16_LOWEST if str(dtype) == "float16" else MASKED_SCORE


def gelu(x):
    """GELU, tanh approximation (GPT-2's `gelu_new`; jt.nn.gelu is the erf form).

    The tanh argument is clamped to [-TANH_SATURATED, TANH_SATURATED]: the same values (tanh is +-1 in float32
    beyond), and the gradient 0 there, as torch's 1 - tanh^2 gives. Jittor differentiates tanh as
    1 / cosh^2, which overflows past |z| ~ 44 and under its -Ofast kernels turns into nan (seen: GELU inputs
    below -15 gave nan gradients, which stopped a LoRA run at step 363)."""
    if cpu_kernels.available(x):
        return cpu_kernels.gelu(x, TANH_SATURATED)
    inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * jt.pow(x, 3.0))
    return 0.5 * x * (1.0 + jt.tanh(inner.clamp(-TANH_SATURATED, TANH_SATURATED)))


def softmax(x):
    """Softmax over the last dimension, shifted by the row max as a constant (see log_softmax)."""
    shifted = (x - x.max(-1, keepdims=True).stop_grad()).exp()
    return shifted / shifted.sum(-1, keepdims=True)


def log_softmax(x):
    """Log-softmax over the last dimension (the vocabulary), with gradients accurate to float32.

    Two Jittor-specific steps: the row max is a constant shift (jt.nn.log_softmax differentiates through
    it, so the float32 rounding of a 50257-term sum, ~1e-3, lands on each row's top logit), and the
    row sums run in float64 (Jittor's float32 sums over 50257 terms put the LoRA gradients ~2e-5 from
    float64, torch's ~1e-6; in float64 Jittor's are ~1e-6 too). On the CPU in float32 a C++ kernel computes the
    same (cpu_kernels.log_softmax: float64 sums, no float64 copy of x)."""
    if cpu_kernels.available(x):
        return cpu_kernels.log_softmax(x)
    x = x.float64()
    shifted = x - x.max(-1, keepdims=True).stop_grad()
    return (shifted - shifted.exp().sum(-1, keepdims=True).log()).float32()


def token_losses(logits, target, label_smooth):
    """Per row of logits [N, vocab]: -log p(target), mixed with the mean over the vocabulary of -log p by
    label_smooth (the reference's label smoothing). On the CPU in float32 one C++ kernel computes it
    (cpu_kernels.smoothed_nll: 9x faster than these lines, which also run in float64 there)."""
    if cpu_kernels.available(logits):
        return cpu_kernels.smoothed_nll(logits, target, label_smooth)
    logprobs = log_softmax(logits)
    per_token = -logprobs.gather(1, target[:, None]).reshape(-1)
    if label_smooth > 0:
        per_token = (1.0 - label_smooth) * per_token + label_smooth * (-logprobs.mean(-1))
    return per_token


class LayerNorm(nn.Module):
    """Two-pass LayerNorm as the reference: mean, then the mean of squared deviations (eps inside the sqrt).

    jt.nn.LayerNorm computes the variance as E[x^2] - E[x]^2, which cancels badly for large means."""

    def __init__(self, n, eps):
        super().__init__()
        self.weight = jt.ones(n)
        self.bias = jt.zeros(n)
        self.eps = eps

    def execute(self, x):
        mean = x.mean(-1, keepdims=True)
        var = (x - mean).pow(2).mean(-1, keepdims=True)
        x = (x - mean) / jt.sqrt(var + self.eps)
        return self.weight * x + self.bias


class Embedding(nn.Module):
    """A lookup table `weight[ids]` (created as zeros: every model is loaded from numpy weights)."""

    def __init__(self, n, dim):
        super().__init__()
        self.weight = jt.zeros(n, dim)

    def execute(self, ids):
        return self.weight[ids]


def projection(n_in, n_out, lora, layer):
    """The Conv1D named `layer` inside a block (a cards.LAYER_SLOTS key), with LoRA where `lora` targets it."""
    return LoRAConv1D(n_in, n_out, lora, lora.enabled_slots(layer))


class KVCache:
    """The key/value cache of one decode, preallocated: per layer, k and v buffers [capacity, n_head, max_len,
    head_dim], of which rows [:rows] and slots [:length] are filled (slot s: the s-th token of each padded row).

    Pass it as `past` from the first call on (the prompt): each layer writes its new keys and values into the
    slots after `length` (Var setitem) and attends over slices of the buffers. Jittor has no index_select into
    given memory: `reorder` gathers the rows into new buffers (setitem of the gathered rows into the old ones
    measured ~1.7x slower). The buffers are allocated by the first write, in the dtype of the keys. The numbers
    are those of the concatenating path (the same values attended to); gpt2_beam.py keeps that path as its
    default in Jittor, whose caching allocator makes its new Vars cheap (the KVCache measured ~5-10% slower).
    """

    def __init__(self, capacity, max_len):
        self.capacity, self.max_len = capacity, max_len
        self.k, self.v = [], []  # per layer
        self.spare = None  # unused in Jittor (torch's reorder target)
        self.rows, self.length = 0, 0

    def __getitem__(self, layer):
        return CacheLayer(self, layer)

    def write(self, layer, k, v):
        """Store layer `layer`'s new keys and values [rows, n_head, t, head_dim] after the filled slots; returns
        the layer's keys and values so far, slices [rows, n_head, length + t, head_dim] of its buffers (k and v
        themselves on the first write: what the concatenating path attends over)."""
        rows, end = k.shape[0], self.length + k.shape[2]
        if rows > self.capacity or end > self.max_len or (self.length and rows != self.rows):
            raise ValueError(f"KVCache of {self.capacity} x {self.max_len} holding {self.rows} x {self.length}: "
                             f"cannot take {rows} rows x {k.shape[2]} slots")
        if layer == len(self.k):  # the first write of this layer
            shape = (self.capacity, k.shape[1], self.max_len, k.shape[3])
            self.k.append(jt.zeros(shape, k.dtype))
            self.v.append(jt.zeros(shape, v.dtype))
        self.k[layer][:rows, :, self.length:end] = k
        self.v[layer][:rows, :, self.length:end] = v
        if self.length == 0:
            return k, v
        return self.k[layer][:rows, :, :end], self.v[layer][:rows, :, :end]

    def advance(self, rows, t):
        """Count the t slots of `rows` rows that every layer has just written (GPT2LMModel.forward, at its end)."""
        self.rows, self.length = rows, self.length + t
        return self

    def reorder(self, parents):
        """Row i becomes what row parents[i] was (parents: int Var, <= capacity rows)."""
        n = parents.shape[0]
        for buffers in (self.k, self.v):
            for layer, buffer in enumerate(buffers):
                buffers[layer] = buffer[parents]
        self.rows = n


class CacheLayer:
    """Layer `layer` of a KVCache, as Attention.forward's `layer_past` (`cache[layer]`)."""

    def __init__(self, cache, layer):
        self.cache, self.layer = cache, layer

    def write(self, k, v):
        return self.cache.write(self.layer, k, v)


class Attention(nn.Module):
    """Causal multi-head self-attention with a key/value cache.

    `attention` (one of ATTENTION_PATHS) picks how the attention itself is computed: see use_sdpa."""

    def __init__(self, config, lora, attention="auto"):
        super().__init__()
        self.attention = attention
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.c_attn = projection(config.n_embd, 3 * config.n_embd, lora, "attn.c_attn")
        self.c_proj = projection(config.n_embd, config.n_embd, lora, "attn.c_proj")

    def split_heads(self, x):
        """[B, T, C] -> [B, n_head, T, head_dim]"""
        b, t, c = x.shape
        return x.reshape(b, t, self.n_head, c // self.n_head).permute(0, 2, 1, 3)

    def use_sdpa(self, x):
        """Never: Jittor 1.3.11 has no fused attention. jittor.attention.scaled_dot_product_attention writes out
        the same matmul, softmax, matmul (plus a bias tensor), and with a boolean attn_mask and is_causal=False it
        fails (it reads a mask it builds only for is_causal); so every path here is the written-out one."""
        return False

    def execute(self, x, blocked, layer_past=None, causal=False):
        """x [B, T, C]; blocked [B|1, 1, T, S] True where a query may not see a key (no row all True); layer_past:
        (k, v) of the earlier tokens (concatenated to), a KVCache's `cache[i]` (written into), or None; causal:
        blocked is exactly the causal mask of T tokens (no cache, no padding), which SDPA takes as is_causal.

        Returns the output [B, T, C] and present = (k, v), each [B, n_head, S, head_dim], S = past + T.
        """
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q, k, v = self.split_heads(q), self.split_heads(k), self.split_heads(v)
        if isinstance(layer_past, CacheLayer):
            k, v = layer_past.write(k, v)
        elif layer_past is not None:
            k = jt.concat([layer_past[0], k], dim=2)
            v = jt.concat([layer_past[1], v], dim=2)
        # (no SDPA branch: see use_sdpa)
        if cpu_kernels.available(q, k, v):  # one oneDNN sgemm per (row, head), one pass per softmax row
            scores = cpu_kernels.batched_matmul(q, k, transpose_b=True) / math.sqrt(q.shape[-1])
            probs = cpu_kernels.masked_softmax(scores, blocked, MASKED_SCORE)
            return self.c_proj(cpu_kernels.batched_matmul(probs, v).permute(0, 2, 1, 3).reshape(b, t, c)), (k, v)
        scores = (q @ k.permute(0, 1, 3, 2)) / math.sqrt(q.shape[-1])
        probs = softmax(scores.masked_fill(blocked, masked_score(scores.dtype)))
        y = (probs @ v).permute(0, 2, 1, 3).reshape(b, t, c)
        return self.c_proj(y), (k, v)


class MLP(nn.Module):
    def __init__(self, config, lora):
        super().__init__()
        self.c_fc = projection(config.n_embd, 4 * config.n_embd, lora, "mlp.c_fc")
        self.c_proj = projection(4 * config.n_embd, config.n_embd, lora, "mlp.c_proj")

    def execute(self, x):
        return self.c_proj(gelu(self.c_fc(x)))


class Block(nn.Module):
    """Pre-LayerNorm transformer block."""

    def __init__(self, config, lora, attention="auto"):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, config.layer_norm_epsilon)
        self.attn = Attention(config, lora, attention)
        self.ln_2 = LayerNorm(config.n_embd, config.layer_norm_epsilon)
        self.mlp = MLP(config, lora)

    def execute(self, x, blocked, layer_past=None, causal=False):
        a, present = self.attn(self.ln_1(x), blocked, layer_past, causal)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, present


class GPT2LMModel(nn.Module):
    """GPT-2 language model with optional LoRA (lora=None or r == 0: plain GPT-2, for full fine-tuning).

    Parameters are created as zeros; load them with `load_weights` (numpy, canonical names).
    `attention`: "reference" (written out) or "auto" (the same here); "sdpa" is refused (see Attention.use_sdpa).
    """

    def __init__(self, config, lora=None, attention="auto"):
        super().__init__()
        if attention not in ATTENTION_PATHS:
            raise ValueError(f"attention={attention!r}: use one of {', '.join(ATTENTION_PATHS)}")
        if attention == "sdpa":
            raise ValueError("attention='sdpa': Jittor 1.3.11 has no fused attention; use auto or reference")
        lora = lora or LoRAConfig(r=0)
        self.config = config
        self.lora = lora
        self.wte = Embedding(config.vocab_size, config.n_embd)
        self.wpe = Embedding(config.n_positions, config.n_embd)
        self.h = nn.ModuleList([Block(config, lora, attention) for _ in range(config.n_layer)])
        self.ln_f = LayerNorm(config.n_embd, config.layer_norm_epsilon)

    def train(self, mode=True):
        """Switch LoRA dropout on (off with mode=False) and nothing else: jt.Module.train / eval would also
        stop and restart gradients, undoing set_trainable (torch's leave requires_grad alone)."""
        for module in self.modules():
            module.is_train = mode
        return self

    def eval(self):
        return self.train(False)

    def execute(self, input_ids, past=None, left_pad=None):
        """Final hidden states (after ln_f) and the key/value cache.

        input_ids [B, T] (int Var). past: the `presents` of the previous call (list of (k, v) per layer,
        each [B, n_head, S_past, head_dim]), or None; reorder beams with `[(k[i], v[i]) for k, v in past]`.
        Or a KVCache, from the first call on, written in place (reorder beams with `past.reorder(i)`).
        left_pad: None, or int Var [B] = number of pad tokens at the start of each row, passed on every call
        of one decode (reordered with the same index as past; pad ids may be anything, their keys are
        never attended to).
        Returns hidden [B, T, n_embd] and presents (k, v per layer, each [B, n_head, S_past + T, head_dim];
        or the KVCache given, now holding the T new slots too).
        """
        cache = past if isinstance(past, KVCache) else None
        past_len = cache.length if cache is not None else 0 if past is None else past[0][0].shape[2]
        t = input_ids.shape[1]
        if past_len + t > self.config.n_positions:
            raise ValueError(f"{past_len + t} tokens (left padding included) exceed "
                             f"n_positions={self.config.n_positions}")
        positions, blocked = self.attention_layout(t, past_len, left_pad)
        x = self.wte(input_ids) + self.wpe(positions)
        causal = left_pad is None and past_len == 0
        presents = []
        for i, block in enumerate(self.h):
            x, present = block(x, blocked, None if past is None else past[i], causal)
            presents.append(present)
        return self.ln_f(x), presents if cache is None else cache.advance(input_ids.shape[0], t)

    def attention_layout(self, t, past_len, left_pad):
        """Position ids [B|1, T] and blocked-key mask [B|1, 1, T, past_len + T] of the T new tokens.

        Slot s of the cache holds the s-th token of the (padded) row. A query at slot q sees keys at
        slots <= q (causal) that are not pads (slot >= left_pad); its position id is q - left_pad. A pad
        query sees its own slot only, so that no row is all blocked (SDPA makes such a row 0, the written-out
        path an average of every value): pad rows compute the same in both paths, and real rows never see them.
        """
        query_slot = jt.arange(past_len, past_len + t)
        key_slot = jt.arange(past_len + t)
        blocked = key_slot[None, :] > query_slot[:, None]  # [T, S]
        if left_pad is None:
            return query_slot[None, :], blocked[None, None]
        positions = (query_slot[None, :] - left_pad[:, None]).clamp(min_v=0)  # pad slots get position 0
        is_pad = key_slot[None, :] < left_pad[:, None]  # [B, S]
        other = key_slot[None, :] != query_slot[:, None]  # [T, S]
        return positions, (blocked[None] | (is_pad[:, None, :] & other[None]))[:, None]

    def logits(self, hidden):
        """hidden [..., n_embd] -> logits [..., vocab] with the tied head (hidden @ wte.T)."""
        return jt.nn.matmul_transpose(hidden, self.wte.weight)  # no transposed copy of the [50257, C] table

    def loss(self, hidden, target, mask, label_smooth=0.0, index=None, total=None):
        """The reference's masked LM loss, computing logits only where mask > 0.

        hidden [B, T, C] from forward; target [B, T] next-token ids (the shift is done in the data);
        mask [B, T] float weights (1 on completion tokens, 0 elsewhere). Per position:
        (1 - eps) * nll + eps * mean over the vocabulary of -log p (eps = label_smooth), times mask,
        summed and divided by mask.sum() + 1e-4. Returns (loss, number of positions with mask > 0).
        index: the flat positions where mask > 0 (long [N], ascending), when the caller knows them
        (`mask_index` of the numpy mask): the same values as computed here, without the host sync of
        a nonzero (whose length the host must read back before it can go on).
        total: the mask sum to divide by (a float32 scalar tensor) when this batch is one rank's rows of a
        global batch: the global batch's (lora_nlg.util.ranks), so that the ranks' losses add up to its loss.
        """
        flat_mask = mask.reshape(-1)
        if index is None:
            index = jt.nonzero(flat_mask > 0).reshape(-1)
        h = hidden.reshape(-1, hidden.shape[-1])[index]
        per_token = token_losses(self.logits(h), target.reshape(-1)[index], label_smooth)
        loss = (per_token * flat_mask[index]).sum() / ((flat_mask.sum() if total is None else total) + LOSS_EPS)
        return loss, int(index.shape[0])

    def load_weights(self, weights, source="weights"):
        """Copy canonical numpy arrays into the parameters; names and shapes must match all parameters exactly."""
        params = dict(self.named_parameters())
        check_shapes({n: tuple(p.shape) for n, p in params.items()}, {n: w.shape for n, w in weights.items()}, source)
        for name, param in params.items():  # Var.update detaches by itself (inside jt.no_grad it would also freeze)
            param.update(jt.array(np.ascontiguousarray(weights[name], dtype=np.float32)))

    def numpy_weights(self, names=None):
        """Canonical name -> float32 numpy copy of the parameters (all, or just `names`)."""
        params = dict(self.named_parameters())
        return {n: params[n].numpy().copy() for n in (params if names is None else names)}


def mask_index(mask):
    """The flat positions where a numpy mask [B, T] is > 0 (int64, ascending): `loss`'s `index`, found on the host."""
    return np.flatnonzero(np.asarray(mask).reshape(-1) > 0)


def pick_device(name, ranks=ONE_PROCESS):
    """The device of gpt2_ft.py's and gpt2_beam.py's --device (auto, cpu, cuda or cuda:N, checked by the CLIs).

    `auto` is cuda when Jittor sees a GPU, else cpu; asking for cuda without one is an error. With several
    processes (`ranks`, lora_nlg.util.ranks) each takes cuda:LOCAL_RANK, which under mpirun is the GPU Jittor
    gives the rank itself. Returns "cuda" or "cpu": Jittor runs every Var on one global device
    (jt.flags.use_cuda), switched here, and only on the first visible GPU (another one: CUDA_VISIBLE_DEVICES)."""
    name = device_name(name, ranks, GPU_AVAILABLE)
    if name.startswith("cuda") and not GPU_AVAILABLE:
        raise DeviceError(f"--device {name}: Jittor sees no CUDA device")
    if name.startswith("cuda:") and name != "cuda:0" and ranks.size == 1:
        raise DeviceError(f"--device {name}: Jittor uses the first visible GPU; "
                          f"run with CUDA_VISIBLE_DEVICES={name[5:]} and --device cuda")
    jt.flags.use_cuda = int(name.startswith("cuda"))
    return "cuda" if name.startswith("cuda") else "cpu"


def set_matmul_precision(device, exact):
    """Let float32 matmuls use TF32 in this process, or not, as `matmul_precision` decides for `device` ("cuda"
    or "cpu", pick_device's) and --exact; returns its label for the log ("tf32", "float32 (exact)", "float32").
    Jittor's switch is jt.flags.use_tensorcore (process-wide, CUDA only): 1 makes its cuBLAS float32 matmuls
    CUBLAS_COMPUTE_32F_FAST_TF32, as torch's allow_tf32 does (cuDNN convolutions too, which this model has none
    of). It must stay 0 under --fp16, where it would also make cuBLAS accumulate float16 products in float16
    (CUBLAS_COMPUTE_16F): gpt2_ft.py passes exact=True there."""
    label = matmul_precision(device, exact)
    jt.flags.use_tensorcore = int(label == "tf32")
    return label
