"""GPT-2 forward against Hugging Face, the KV cache, left padding, and the masked loss."""
import pytest
import torch

from alignment.fixtures import SMALL, lora_weights, random_weights, token_ids
from hf_reference import hf_model
from lora_nlg.model.config import LoRAConfig, lora_shapes, param_shapes
from lora_nlg.util.errors import CheckpointError
from model import GPT2LMModel

LORA = LoRAConfig(r=4, alpha=32, targets="q,v,o,fc,proj")


def _model(lora=None, seed=0):
    """SMALL GPT-2 with random weights; with LoRA, B is random too so the LoRA branch matters."""
    model = GPT2LMModel(SMALL, lora).eval()
    weights = random_weights(seed=seed)
    if lora is not None:
        weights.update(lora_weights(SMALL, lora, seed))
    model.load_weights(weights)
    return model


def _ids(shape, seed=0):
    return torch.from_numpy(token_ids(shape, seed=seed))


def test_logits_equal_huggingface_gpt2():
    weights = random_weights(seed=3)
    ours = GPT2LMModel(SMALL).eval()
    ours.load_weights(weights)
    ids = _ids((3, 40))
    with torch.no_grad():
        expected = hf_model(weights)(ids).logits
        hidden, _ = ours(ids)
        logits = ours.logits(hidden)
    assert expected.abs().max() > 1.0  # not a trivially small comparison
    assert (logits - expected).abs().max().item() <= 1e-5


def test_parameters_are_exactly_the_canonical_names():
    assert {n: tuple(p.shape) for n, p in GPT2LMModel(SMALL).named_parameters()} == param_shapes(SMALL)
    names = {n: tuple(p.shape) for n, p in GPT2LMModel(SMALL, LORA).named_parameters()}
    assert names == {**param_shapes(SMALL), **lora_shapes(SMALL, LORA)}
    assert list(GPT2LMModel(SMALL).state_dict()) == list(param_shapes(SMALL))  # no buffers in the state


def test_load_weights_names_the_bad_key():
    weights = random_weights()
    weights["h.1.attn.c_proj.weight"] = weights["h.1.attn.c_proj.weight"][:, :10]
    del weights["ln_f.bias"]
    with pytest.raises(CheckpointError) as info:
        GPT2LMModel(SMALL).load_weights(weights, source="test weights")
    message = str(info.value)
    assert message.startswith("test weights: missing keys: ln_f.bias; shape mismatch: h.1.attn.c_proj.weight")
    assert "\n" not in message


@pytest.mark.parametrize("lora", [None, LORA])
def test_kv_cache_decoding_equals_full_forward(lora):
    model = _model(lora)
    ids = _ids((2, 12), seed=1)
    with torch.no_grad():
        full, _ = model(ids)
        hidden, past = model(ids[:, :5])
        steps = [hidden]
        for t in range(5, 12):
            hidden, past = model(ids[:, t:t + 1], past=past)
            steps.append(hidden)
    assert past[0][0].shape == (2, SMALL.n_head, 12, SMALL.n_embd // SMALL.n_head)
    assert (torch.cat(steps, dim=1) - full).abs().max().item() <= 1e-5


@pytest.mark.parametrize("lora", [None, LORA])
def test_left_padded_rows_equal_unpadded_rows(lora):
    """Prompts of lengths 3, 9, 6 decoded as one left-padded batch, then 4 cached steps: each row
    must match the same row run alone (prompt + continuation, one full forward)."""
    model = _model(lora)
    prompts = [_ids((1, n), seed=10 + n)[0] for n in (3, 9, 6)]
    continuation = _ids((3, 4), seed=2)
    width = max(len(p) for p in prompts)
    left_pad = torch.tensor([width - len(p) for p in prompts])
    junk = _ids((3, width), seed=5)  # pad ids must not matter
    batch = torch.stack([torch.cat([junk[i, :int(left_pad[i])], p]) for i, p in enumerate(prompts)])
    with torch.no_grad():
        hidden, past = model(batch, left_pad=left_pad)
        assert torch.isfinite(hidden).all()  # pad queries see no key, yet stay finite
        batched = [model.logits(hidden[:, -1])]
        for t in range(4):
            hidden, past = model(continuation[:, t:t + 1], past=past, left_pad=left_pad)
            batched.append(model.logits(hidden[:, -1]))
        for i, prompt in enumerate(prompts):
            alone, _ = model(torch.cat([prompt, continuation[i]])[None])
            expected = model.logits(alone[0, len(prompt) - 1:])
            got = torch.stack([step[i] for step in batched])
            assert (got - expected).abs().max().item() <= 1e-5


def test_positions_beyond_the_context_are_an_error():
    with pytest.raises(ValueError, match="n_positions=64"):
        GPT2LMModel(SMALL)(_ids((1, 65)))


def _reference_loss(logits, target, mask, eps):
    """The reference's loss: full logits, per-position smoothed NLL, times mask, / (mask.sum() + 1e-4)."""
    logprobs = torch.log_softmax(logits, dim=-1)
    nll = -logprobs.gather(-1, target[..., None])[..., 0]
    loss = (1 - eps) * nll + eps * (-logprobs.mean(-1)) if eps > 0 else nll
    return (loss * mask).sum() / (mask.sum() + 1e-4)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_masked_loss_equals_the_full_logits_formula(eps):
    model = GPT2LMModel(SMALL)
    model.load_weights(random_weights())
    ids, target = _ids((3, 16), seed=1), _ids((3, 16), seed=2)
    mask = torch.zeros(3, 16)
    mask[0, 4:9] = 1
    mask[1, 10:16] = 1
    mask[2, 1:2] = 1
    hidden, _ = model(ids)
    loss, n_tokens = model.loss(hidden, target, mask, label_smooth=eps)
    (grad,) = torch.autograd.grad(loss, hidden)
    hidden_ref = hidden.detach().requires_grad_(True)
    expected = _reference_loss(model.logits(hidden_ref), target, mask, eps)
    (grad_ref,) = torch.autograd.grad(expected, hidden_ref)
    assert n_tokens == 12
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert (grad - grad_ref).abs().max().item() <= 1e-7
    if eps == 0:  # and plain cross-entropy, the reference's branch without smoothing
        ce = torch.nn.functional.cross_entropy(model.logits(hidden).reshape(-1, SMALL.vocab_size), target.reshape(-1),
                                               reduction="none")
        assert loss.item() == pytest.approx(((ce * mask.reshape(-1)).sum() / (mask.sum() + 1e-4)).item(), rel=1e-6)
