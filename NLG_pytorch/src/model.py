"""GPT-2 with LoRA, computing what microsoft/LoRA examples/NLG/src/model.py computes.

No dropout in the backbone (only on the LoRA branch input), tanh GELU and two-pass LayerNorm
written out, fused q/k/v projection, attention written out, LM head tied to the token embedding.
Parameters carry the canonical OpenAI GPT-2 names (`wte.weight`, `h.0.attn.c_attn.weight`, ...,
`h.0.attn.c_attn.lora_A`), so loading is a key check plus a copy; there are no buffers.

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

Two paths each compute the same numbers, the written-out one kept as the reference (`attention=` of
GPT2LMModel, `--exact`): attention through torch's fused scaled_dot_product_attention ("sdpa") or written
out as scores, masked_fill, softmax, @ v ("reference"; "auto": sdpa on CUDA, reference on CPU); the key/value
cache as a KVCache (preallocated, written and reordered in place) or as the (k, v) pairs that each step
concatenates to. tests/NLG_pytorch/test_fast_paths.py holds them to each other.

`pick_device(args.device)` is where both gpt2_ft.py and gpt2_beam.py decide the device the model runs on.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lora import LoRAConv1D
from lora_nlg.checkpoints.tensor_files import check_shapes
from lora_nlg.model.config import LoRAConfig
from lora_nlg.util.flags import DeviceError, matmul_precision
from lora_nlg.util.ranks import ONE_PROCESS, device_name

MASKED_SCORE = -1e10  # the reference's fill: exp() gives exactly 0, and a row with no visible key stays finite
LOSS_EPS = 1e-4  # the reference divides the masked loss sum by mask.sum() + 1e-4
ATTENTION_PATHS = ("auto", "sdpa", "reference")  # GPT2LMModel(attention=...): see Attention.use_sdpa


def masked_score(dtype):
    """The fill of blocked attention scores in `dtype`: MASKED_SCORE where the dtype holds it (float32 and
    bfloat16: the reference's numbers, bit for bit), else the dtype's lowest finite value (float16 autocast:
    -65504, since -1e10 overflows there and -inf would make a row with no visible key nan)."""
    return max(MASKED_SCORE, torch.finfo(dtype).min)


def gelu(x):
    """GELU, tanh approximation (GPT-2's `gelu_new`)."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def softmax(x):
    """Softmax over the last dimension."""
    return torch.softmax(x, dim=-1)


def log_softmax(x):
    """Log-softmax over the last dimension (the vocabulary)."""
    return torch.log_softmax(x, dim=-1)


def token_losses(logits, target, label_smooth):
    """Per row of logits [N, vocab]: -log p(target), mixed with the mean over the vocabulary of -log p by
    label_smooth (the reference's label smoothing)."""
    logprobs = log_softmax(logits)
    per_token = -logprobs.gather(1, target[:, None]).reshape(-1)
    if label_smooth > 0:
        per_token = (1.0 - label_smooth) * per_token + label_smooth * (-logprobs.mean(-1))
    return per_token


class LayerNorm(nn.Module):
    """Two-pass LayerNorm as the reference: mean, then the mean of squared deviations (eps inside the sqrt)."""

    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.bias = nn.Parameter(torch.zeros(n))
        self.eps = eps

    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        var = (x - mean).pow(2).mean(-1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight * x + self.bias


class Embedding(nn.Module):
    """A lookup table `weight[ids]` (created as zeros: every model is loaded from numpy weights).

    Through F.embedding, whose CPU backward sums each row's gradients in a fixed order: the backward of
    `weight[ids]` (index_put with accumulate) adds repeated ids from several threads, so two runs of the
    same command differed in the last bits (and, over a pretraining run, in the base it made)."""

    def __init__(self, n, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n, dim))

    def forward(self, ids):
        return F.embedding(ids, self.weight)


def projection(n_in, n_out, lora, layer):
    """The Conv1D named `layer` inside a block (a cards.LAYER_SLOTS key), with LoRA where `lora` targets it."""
    return LoRAConv1D(n_in, n_out, lora, lora.enabled_slots(layer))


class KVCache:
    """The key/value cache of one decode, preallocated: per layer, k and v buffers [capacity, n_head, max_len,
    head_dim], of which rows [:rows] and slots [:length] are filled (slot s: the s-th token of each padded row).

    Pass it as `past` from the first call on (the prompt): each layer writes its new keys and values into the
    slots after `length` and attends over views of the buffers, so no step concatenates (torch.cat copies the
    whole cache, per layer and step). `reorder(parents)` moves rows to their parents (beams follow their parent
    hypotheses, finished examples leave) by index_select into a spare buffer, which then takes the old one's
    place: no allocation per step either. The buffers are allocated by the first write, on the device and in
    the dtype of the keys. The numbers are those of the concatenating path (the same values attended to).
    """

    def __init__(self, capacity, max_len):
        self.capacity, self.max_len = capacity, max_len
        self.k, self.v = [], []  # per layer
        self.spare = None  # one more buffer of the same shape: where reorder writes
        self.rows, self.length = 0, 0

    def __getitem__(self, layer):
        return CacheLayer(self, layer)

    def write(self, layer, k, v):
        """Store layer `layer`'s new keys and values [rows, n_head, t, head_dim] after the filled slots; returns
        the layer's keys and values so far, views [rows, n_head, length + t, head_dim] of its buffers (k and v
        themselves on the first write: what the concatenating path attends over, in their memory layout, which
        decides how a CPU matmul sums, so the bits too)."""
        rows, end = k.shape[0], self.length + k.shape[2]
        if rows > self.capacity or end > self.max_len or (self.length and rows != self.rows):
            raise ValueError(f"KVCache of {self.capacity} x {self.max_len} holding {self.rows} x {self.length}: "
                             f"cannot take {rows} rows x {k.shape[2]} slots")
        if layer == len(self.k):  # the first write of this layer
            shape = (self.capacity, k.shape[1], self.max_len, k.shape[3])
            self.k.append(k.new_empty(shape))
            self.v.append(v.new_empty(shape))
            self.spare = k.new_empty(shape) if self.spare is None else self.spare
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
        """Row i becomes what row parents[i] was (parents: long tensor on the cache's device, <= capacity rows)."""
        n = parents.shape[0]
        for buffers in (self.k, self.v):
            for layer, buffer in enumerate(buffers):
                torch.index_select(buffer[:self.rows, :, :self.length], 0, parents, out=self.spare[:n, :, :self.length])
                buffers[layer], self.spare = self.spare, buffer
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
        """Whether this call takes torch.nn.functional.scaled_dot_product_attention (fused kernels: flash or
        memory-efficient on CUDA, a blocked flash kernel on CPU) instead of the written-out reference: always for
        attention="sdpa", never for "reference", on CUDA for "auto". Both give the same numbers to ~1e-6.
        On CPU "auto" is the written-out path: at gpt2.tiny / E2E sizes SDPA halves the attention of a training
        step but that is ~3% of the step (within the noise of scripts/benchmark.py), a one-token decoding step's
        attention is ~25% slower with it, and the written-out path is what Jittor computes, bit for bit."""
        return self.attention == "sdpa" or (self.attention == "auto" and x.is_cuda)

    def forward(self, x, blocked, layer_past=None, causal=False):
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
            k = torch.cat([layer_past[0], k], dim=2)
            v = torch.cat([layer_past[1], v], dim=2)
        if self.use_sdpa(x):  # SDPA's boolean mask is True where a key takes part
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=None if causal else ~blocked, is_causal=causal)
            return self.c_proj(y.permute(0, 2, 1, 3).reshape(b, t, c)), (k, v)
        scores = (q @ k.permute(0, 1, 3, 2)) / math.sqrt(q.shape[-1])
        probs = softmax(scores.masked_fill(blocked, masked_score(scores.dtype)))
        y = (probs @ v).permute(0, 2, 1, 3).reshape(b, t, c)
        return self.c_proj(y), (k, v)


class MLP(nn.Module):
    def __init__(self, config, lora):
        super().__init__()
        self.c_fc = projection(config.n_embd, 4 * config.n_embd, lora, "mlp.c_fc")
        self.c_proj = projection(4 * config.n_embd, config.n_embd, lora, "mlp.c_proj")

    def forward(self, x):
        return self.c_proj(gelu(self.c_fc(x)))


class Block(nn.Module):
    """Pre-LayerNorm transformer block."""

    def __init__(self, config, lora, attention="auto"):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, config.layer_norm_epsilon)
        self.attn = Attention(config, lora, attention)
        self.ln_2 = LayerNorm(config.n_embd, config.layer_norm_epsilon)
        self.mlp = MLP(config, lora)

    def forward(self, x, blocked, layer_past=None, causal=False):
        a, present = self.attn(self.ln_1(x), blocked, layer_past, causal)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, present


class GPT2LMModel(nn.Module):
    """GPT-2 language model with optional LoRA (lora=None or r == 0: plain GPT-2, for full fine-tuning).

    Parameters are created as zeros; load them with `load_weights` (numpy, canonical names).
    `attention`: "sdpa", "reference" (written out) or "auto" (sdpa on CUDA, reference on CPU), see Attention.
    """

    def __init__(self, config, lora=None, attention="auto"):
        super().__init__()
        if attention not in ATTENTION_PATHS:
            raise ValueError(f"attention={attention!r}: use one of {', '.join(ATTENTION_PATHS)}")
        lora = lora or LoRAConfig(r=0)
        self.config = config
        self.lora = lora
        self.wte = Embedding(config.vocab_size, config.n_embd)
        self.wpe = Embedding(config.n_positions, config.n_embd)
        self.h = nn.ModuleList([Block(config, lora, attention) for _ in range(config.n_layer)])
        self.ln_f = LayerNorm(config.n_embd, config.layer_norm_epsilon)

    def forward(self, input_ids, past=None, left_pad=None):
        """Final hidden states (after ln_f) and the key/value cache.

        input_ids [B, T] (long). past: the `presents` of the previous call (list of (k, v) per layer,
        each [B, n_head, S_past, head_dim]), or None; reorder beams with `[(k[i], v[i]) for k, v in past]`.
        Or a KVCache, from the first call on, written in place (reorder beams with `past.reorder(i)`).
        left_pad: None, or long [B] = number of pad tokens at the start of each row, passed on every call
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
        device = self.wte.weight.device
        query_slot = torch.arange(past_len, past_len + t, device=device)
        key_slot = torch.arange(past_len + t, device=device)
        blocked = key_slot[None, :] > query_slot[:, None]  # [T, S]
        if left_pad is None:
            return query_slot[None, :], blocked[None, None]
        positions = (query_slot[None, :] - left_pad[:, None]).clamp(min=0)  # pad slots get position 0
        is_pad = key_slot[None, :] < left_pad[:, None]  # [B, S]
        other = key_slot[None, :] != query_slot[:, None]  # [T, S]
        return positions, (blocked[None] | (is_pad[:, None, :] & other[None]))[:, None]

    def logits(self, hidden):
        """hidden [..., n_embd] -> logits [..., vocab] with the tied head (hidden @ wte.T)."""
        return hidden @ self.wte.weight.t()

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
            index = torch.nonzero(flat_mask > 0).reshape(-1)
        h = hidden.reshape(-1, hidden.shape[-1])[index]
        per_token = token_losses(self.logits(h), target.reshape(-1)[index], label_smooth)
        loss = (per_token * flat_mask[index]).sum() / ((flat_mask.sum() if total is None else total) + LOSS_EPS)
        return loss, int(index.shape[0])

    def load_weights(self, weights, source="weights"):
        """Copy canonical numpy arrays into the parameters; names and shapes must match all parameters exactly."""
        params = dict(self.named_parameters())
        check_shapes({n: tuple(p.shape) for n, p in params.items()}, {n: w.shape for n, w in weights.items()}, source)
        with torch.no_grad():
            for name, param in params.items():
                param.copy_(torch.from_numpy(np.ascontiguousarray(weights[name], dtype=np.float32)))

    def numpy_weights(self, names=None):
        """Canonical name -> float32 numpy copy of the parameters (all, or just `names`)."""
        params = dict(self.named_parameters())
        return {n: params[n].detach().cpu().numpy().copy() for n in (params if names is None else names)}


def mask_index(mask):
    """The flat positions where a numpy mask [B, T] is > 0 (int64, ascending): `loss`'s `index`, found on the host."""
    return np.flatnonzero(np.asarray(mask).reshape(-1) > 0)


def pick_device(name, ranks=ONE_PROCESS):
    """The device of gpt2_ft.py's and gpt2_beam.py's --device (auto, cpu, cuda or cuda:N, checked by the CLIs).

    `auto` is cuda when torch sees a GPU, else cpu; asking for cuda without one is an error. With several
    processes (`ranks`, lora_nlg.util.ranks) each takes cuda:LOCAL_RANK. Returns the torch.device that the
    model and its inputs are moved to."""
    name = device_name(name, ranks, torch.cuda.is_available())
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"--device {name}: torch sees no CUDA device")
    return torch.device(name)


def set_matmul_precision(device, exact):
    """Let float32 matmuls (and cuDNN) use TF32 in this process, or not, as `matmul_precision` decides for
    `device` (a torch.device) and --exact; returns its label for the log ("tf32", "float32 (exact)", "float32").
    The switches are process-wide and only act on CUDA: on CPU they are turned off (nothing to change there)."""
    label = matmul_precision(device.type, exact)
    torch.backends.cuda.matmul.allow_tf32 = label == "tf32"  # = torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.allow_tf32 = label == "tf32"
    return label
