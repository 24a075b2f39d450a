"""PyTorch reference values for the Jittor alignment tests (run in .venv-torch, as a subprocess).

    PYTHONPATH=tests .venv-torch/bin/python tests/alignment/torch_reference.py OUT_DIR
        writes OUT_DIR/cases.json, OUT_DIR/base.npz (the batch and the base weights, shared by all
        cases) and per case OUT_DIR/<case>.npz: LoRA weights, logits, loss, gradients and the trained
        weights after one clipped AdamW step; plus the adapter torch saves after that step
        (OUT_DIR/adapter/model.1.*) and its logits.
    PYTHONPATH=tests .venv-torch/bin/python tests/alignment/torch_reference.py --adapter STEM --base BASE.npz --out NPZ
        logits of the base weights (BASE.npz: OUT_DIR/base.npz) with the adapter at STEM on the stored
        batch, so an adapter written by Jittor is checked in torch.

Everything the Jittor side computes from comes out of these files (weights included), so the two
frameworks see bit-identical inputs. gpt2.tiny keeps the real 50257-token vocabulary and LM head;
the weights and the batch are tests/alignment/fixtures.py's.
"""
import argparse
import json
import os
import pathlib

import numpy as np
import torch

from alignment.fixtures import lora_weights, random_weights, synthetic_batch
from lora import set_trainable, trainable_state_dict
from lora_nlg.checkpoints.adapter import load_adapter, save_adapter
from lora_nlg.model.config import LoRAConfig, get_card
from model import GPT2LMModel
from optim import AdamW, clip_grad_norm

CARD = "gpt2.tiny"
SEED = 17
LABEL_SMOOTH = 0.1
LR, WEIGHT_DECAY, CLIP = 1e-3, 0.01, 0.1  # CLIP below every case's gradient norm, so clipping acts
CASES = {
    "lora_qv": LoRAConfig(r=4, alpha=32, dropout=0.0, targets="q,v"),
    "lora_attn_mlp": LoRAConfig(r=4, alpha=32, dropout=0.0, targets="attn,mlp"),
    "full": LoRAConfig(r=0),
}
ADAPTER_CASE = "lora_qv"


def run_case(config, lora, batch, weights):
    """Forward, loss, backward, clip and one AdamW step: everything the Jittor side must reproduce."""
    model = GPT2LMModel(config, lora)
    model.load_weights(weights)
    set_trainable(model, lora)
    model.train()
    optimizer = AdamW([(n, p) for n, p in model.named_parameters() if p.requires_grad], weight_decay=WEIGHT_DECAY)
    hidden, _ = model(torch.from_numpy(batch.input))
    logits = model.logits(hidden).detach().numpy()  # now: with r == 0 the step below changes the tied head
    loss, n_tokens = model.loss(hidden, torch.from_numpy(batch.target), torch.from_numpy(batch.mask), LABEL_SMOOTH)
    loss.backward()
    grads = {name: p.grad.numpy().copy() for name, p in optimizer.params.items()}
    total_norm = float(clip_grad_norm([p.grad for p in optimizer.params.values()], CLIP))
    optimizer.step(LR)
    arrays = {"logits": logits, "loss": np.array(loss.item()),
              "n_tokens": np.array(n_tokens), "total_norm": np.array(total_norm)}
    arrays.update({f"weight.{n}": w for n, w in weights.items() if ".lora_" in n})
    arrays.update({f"grad.{n}": g for n, g in grads.items()})
    arrays.update({f"stepped.{n}": w for n, w in model.numpy_weights(list(optimizer.params)).items()})
    return model, arrays


def logits_of(model, ids):
    model.eval()
    with torch.no_grad():
        return model.logits(model(torch.from_numpy(ids))[0]).numpy()


def write_reference(out_dir):
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = get_card(CARD)
    batch = synthetic_batch(config, seed=SEED)
    meta = {"card": CARD, "label_smooth": LABEL_SMOOTH, "lr": LR, "weight_decay": WEIGHT_DECAY, "clip": CLIP,
            "cases": {name: lora.to_dict() for name, lora in CASES.items()}}
    # GPT-2's embedding scale: with 10x (logits ~10 over 50257 tokens) torch's float32 log-softmax alone
    # puts its gradients ~6e-5 from float64, while Jittor's (in float64) stays ~1e-6 from it.
    base = random_weights(config, SEED, embedding_scale=1.0)
    np.savez(out_dir / "base.npz", input=batch.input, target=batch.target, mask=batch.mask,
             **{f"weight.{n}": w for n, w in base.items()})
    for name, lora in CASES.items():
        model, arrays = run_case(config, lora, batch, {**base, **lora_weights(config, lora, SEED)})
        if name == ADAPTER_CASE:
            state = model.numpy_weights(list(trainable_state_dict(model)))
            meta["adapter"] = save_adapter(out_dir / "adapter" / "model.1", state, config, lora, CARD, 1, "pytorch")
            arrays["adapter_logits"] = logits_of(model, batch.input)
        np.savez(out_dir / f"{name}.npz", **arrays)
    (out_dir / "cases.json").write_text(json.dumps(meta, indent=2))


def adapter_logits(stem, base_npz, out):
    """Logits of base weights + an adapter (written by either framework) on the stored batch."""
    adapter = load_adapter(stem)
    stored = np.load(base_npz)
    base = {k[len("weight."):]: stored[k] for k in stored.files if k.startswith("weight.")}
    model = GPT2LMModel(adapter.config, adapter.lora)
    model.load_weights({**base, **adapter.tensors}, source=os.fspath(stem))
    np.savez(out, logits=logits_of(model, stored["input"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", nargs="?")
    parser.add_argument("--adapter")
    parser.add_argument("--base")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.adapter:
        adapter_logits(args.adapter, args.base, args.out)
    else:
        write_reference(args.out_dir)


if __name__ == "__main__":
    main()
