"""Convert any torch checkpoint (.bin / .pt / .pth, legacy pre-1.6 format included) to safetensors.

The project reads torch zip checkpoints without torch (lora_nlg.checkpoints), but not the legacy
pre-1.6 format, in which e.g. old `gpt2-medium-pytorch_model.bin` files were written. Run this once
in the torch venv; the result loads in both trees. Names are kept as they are (the loaders map them).

    .venv-torch/bin/python scripts/convert_checkpoint.py gpt2-medium-pytorch_model.bin gpt2-medium.safetensors
"""
import argparse

import torch

from lora_nlg.checkpoints.tensor_files import save_safetensors
from lora_nlg.util.errors import CheckpointError, run_cli


def torch_state(path):
    """The name -> tensor dict of a torch checkpoint (unwrapping {'model_state_dict': ...})."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(path, "file not found") from None
    except Exception as error:  # torch raises many types for unreadable files
        raise CheckpointError(path, f"not a readable torch checkpoint ({type(error).__name__}: {error})") from None
    for wrapper in ("model_state_dict", "state_dict"):
        if isinstance(obj, dict) and wrapper in obj:
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(path, "checkpoint is not a dict of tensors")
    return obj


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", help="torch checkpoint (.bin / .pt / .pth)")
    parser.add_argument("target", help="output .safetensors file")
    args = parser.parse_args(argv)
    if not args.target.endswith(".safetensors"):
        raise CheckpointError(args.target, "output name must end in .safetensors")
    state = torch_state(args.source)
    arrays = {name: (tensor.float() if tensor.is_floating_point() else tensor).detach().contiguous().numpy()
              for name, tensor in state.items()}
    save_safetensors(args.target, arrays)
    print(f"wrote {len(arrays)} tensors to {args.target}")
    return 0


if __name__ == "__main__":
    run_cli(main)
