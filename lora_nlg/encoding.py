"""Records -> GPT-2 token ids, as microsoft/LoRA's `gpt2_encode.py --add_bos --add_eos` writes them.

context ids = encode(context) + [<|endoftext|>]; completion ids = encode(' ' + completion) +
[<|endoftext|>]. The leading space makes the first completion word a word-initial token, as it is
when the model continues the context; the end token doubles as separator and stop signal.
"""
from lora_nlg.tokenizer import EOS_ID


def encode_records(tokenizer, records):
    """[{"context": [ids], "completion": [ids]}] for the records, in order."""
    contexts = tokenizer.encode_batch([record["context"] for record in records])
    completions = tokenizer.encode_batch([" " + record["completion"] for record in records])
    return [{"context": context + [EOS_ID], "completion": completion + [EOS_ID]}
            for context, completion in zip(contexts, completions)]
