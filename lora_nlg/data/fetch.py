"""Where the raw datasets and the GPT-2 vocabulary come from, and proof that they are the right files.

Files are fetched either from their official public locations (microsoft/LoRA's GitHub copies of
E2E, WebNLG 2017 and the GPT-2 vocabulary; Yale-LILY/dart for DART v1.1.1) or from a local mirror
laid out like microsoft/LoRA's `examples/NLG` (`data/<dataset>/...`, `vocab/...`). Every file is
checked against the sha256 recorded below, so a truncated download or a different release is an
error instead of a silently different experiment. With LORA_NLG_DOWNLOAD_URL set, every download
comes from that URL instead: a mirror served over HTTP (`<URL>/data/e2e/train.txt`, ...), checked
against the mirror's sums.
"""
import os
import shutil
import urllib.error
import urllib.request
from typing import NamedTuple

from lora_nlg.util.errors import NLGError
from lora_nlg.util.files import atomic_open, sha256_file

LORA_NLG_URL = "https://raw.githubusercontent.com/microsoft/LoRA/main/examples/NLG/"
DART_URL = "https://raw.githubusercontent.com/Yale-LILY/dart/master/data/v1.1.1/"
DOWNLOAD_URL_ENV = "LORA_NLG_DOWNLOAD_URL"  # a mirror's base URL, used for every download instead
DART_POOL_FRACTION = 0.18  # the offline DART training pool is an 18% sample of DART train


class RawFile(NamedTuple):
    path: str  # relative path, both in a mirror and in the download cache
    url: str | None  # official public location; None: only mirrors have this file
    sha256: str | None  # of the mirror copy; None: not recorded
    url_sha256: str | None  # of the file at `url`; None: not recorded (could not be fetched offline)


class Fetched(NamedTuple):
    raw: RawFile
    local: str  # where the verified file is on this machine
    sha256: str
    verified: bool  # False: no recorded sum existed to compare with (printed and put in the manifest)


def _lora(path, sha256):
    """A file microsoft/LoRA hosts; the mirror copy is byte-identical to it."""
    return RawFile(path, LORA_NLG_URL + path, sha256, sha256)


VOCAB = (
    _lora("vocab/encoder.json", "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"),
    _lora("vocab/vocab.bpe", "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"),
)

RAW_SPLITS = {
    "e2e": {
        "train": _lora("data/e2e/train.txt", "eae319082237310913d9f37f6a891d48fb3f821f29d86870d2cb4f92ddd72c5a"),
        "valid": _lora("data/e2e/valid.txt", "ba963113c8401d3d26216c0dc0a6dae1ea6ea927de3bf830e32c41f65401c80d"),
        "test": _lora("data/e2e/test.txt", "81b1bcd40c4f12845ec4eb61a77bf43765d112483cd9b2f91ef10bfc1b3d8f13"),
    },
    "webnlg": {
        "train": _lora("data/webnlg_challenge_2017/train.json",
                       "180edb6011360608c8548d4551366a9d55f140cbf9bc9397fbf4d97f6a89c639"),
        "valid": _lora("data/webnlg_challenge_2017/dev.json",
                       "50f5a2c24d760bc84ba3e852707cd3b43b0cf2da035b425f87945a2440880488"),
        "test": _lora("data/webnlg_challenge_2017/test.json",
                      "2574896b23b5959d1a0cd4bb501ffbeff1a11790a9996c4cb8efed289149ff4f"),
    },
    # The mirror's dev file is microsoft/LoRA's copy and its test file was rebuilt from the official
    # XML; neither is byte-identical to Yale-LILY's JSON, whose sums are not recorded yet.
    "dart": {
        "train": RawFile("data/dart/dart-v1.1.1-full-train.json", DART_URL + "dart-v1.1.1-full-train.json",
                         None, None),
        "valid": RawFile("data/dart/dart-v1.1.1-full-dev.json", DART_URL + "dart-v1.1.1-full-dev.json",
                         "5038f3543b6d59b94ac4e3f69d15a0b01d8578913f862142e7c560200dd6e434", None),
        "test": RawFile("data/dart/dart-v1.1.1-full-test.json", DART_URL + "dart-v1.1.1-full-test.json",
                        "176d73ab3a2f476f8a93535aa1ca99f17c45bfef8f79d1cd3dc909af9dd3437d", None),
    },
}

# SQuAD v1.1 (data/prepare.py --dataset squad): the official dev set is the test set and the validation
# set is a held-out slice of train. The official train file is not in the offline mirror; its stand-in
# is a rebuild from the official explorer pages (same texts, questions and answers; synthetic ids).
SQUAD_URL = "https://rajpurkar.github.io/SQuAD-explorer/dataset/"
RAW_SPLITS["squad"] = {
    "train": RawFile("data/squad/train-v1.1.json", SQUAD_URL + "train-v1.1.json", None, None),
    "test": RawFile("data/squad/dev-v1.1.json", SQUAD_URL + "dev-v1.1.json",
                    "95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9",
                    "95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9"),
}
SQUAD_TRAIN_REBUILT = RawFile("data/squad/train-v1.1.reconstructed.json", None,
                              "0fa03419ed03912c7c252559d2b7cd2449db11bd28130b9170264067552eb3fd", None)

# Offline stand-in for DART train: an 18% line sample of it, already formatted, from 1Reminding/LoRA_Jittor
# (the mirror's copy is that repository's file: same 3,174,040 characters; the sum is checked at download).
DART_POOL_URL = ("https://raw.githubusercontent.com/1Reminding/LoRA_Jittor/60c3dca337dff79ad03e25f38c97e82137958a56/"
                 "NLG_jittor/data/dart/sampled/train_formatted.jsonl")
DART_TRAIN_POOL = RawFile("data/dart/sampled_18pct/train_formatted.jsonl", DART_POOL_URL,
                          "294f40d594e428673f8e0539a04a9e9bc66e977a6723533a0afcedb6e7e554d9",
                          "294f40d594e428673f8e0539a04a9e9bc66e977a6723533a0afcedb6e7e554d9")


def _verify(raw, local, expected):
    if not os.path.isfile(local):
        raise NLGError(f"{local}: missing")
    actual = sha256_file(local)
    if expected is not None and actual != expected:
        raise NLGError(f"{local}: sha256 {actual} does not match the recorded {expected} (corrupt or a different file)")
    return Fetched(raw, local, actual, expected is not None)


def from_mirror(raw, root):
    """The mirror's copy of `raw`, verified."""
    return _verify(raw, os.path.join(root, raw.path), raw.sha256)


def download_source(raw):
    """(URL, sha256 to expect or None) of `raw`: its official location, or the LORA_NLG_DOWNLOAD_URL mirror's."""
    mirror = os.environ.get(DOWNLOAD_URL_ENV)
    if mirror:
        return mirror.rstrip("/") + "/" + raw.path, raw.sha256
    if raw.url is None:
        raise NLGError(f"{raw.path}: no public download (only a local mirror has it); use --source DIR, or set "
                       f"{DOWNLOAD_URL_ENV} to a mirror's URL")
    return raw.url, raw.url_sha256


def download(raw, cache_dir):
    """Download `raw` into `cache_dir`, verified; a verified copy there is not fetched again, a damaged one is
    replaced, and a download with the wrong sum is deleted before the error."""
    url, expected = download_source(raw)
    local = os.path.join(cache_dir, raw.path)
    if os.path.isfile(local) and (expected is None or sha256_file(local) == expected):
        return _verify(raw, local, expected)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, atomic_open(local, binary=True) as f:
            shutil.copyfileobj(response, f)
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", None) or err
        code = f"HTTP {err.code} " if isinstance(err, urllib.error.HTTPError) else ""
        raise NLGError(f"{url}: download failed ({code}{reason}); offline? use --source DIR (a local mirror)") \
            from None
    actual = sha256_file(local)
    if expected is not None and actual != expected:
        os.remove(local)
        raise NLGError(f"{url}: downloaded sha256 {actual} does not match the recorded {expected} (corrupt or a "
                       f"different file; not kept)")
    return _verify(raw, local, expected)


def fetch_splits(dataset, source, cache_dir):
    """{split: Fetched} for train/valid/test of `dataset`, from the mirror `source` or (None) downloaded.

    A mirror without the full DART train split but with the 18% DART training pool gives the pool
    as 'train' (callers see it as `raw == DART_TRAIN_POOL` and must say so); likewise a mirror without
    the official SQuAD train file gives the rebuilt one (`raw == SQUAD_TRAIN_REBUILT`). SQuAD has no
    'valid' file: data/prepare.py holds out part of train.
    """
    raws = dict(RAW_SPLITS[dataset])
    if source is None:
        return {split: download(raw, cache_dir) for split, raw in raws.items()}
    if dataset == "squad" and not os.path.isfile(os.path.join(source, raws["train"].path)):
        if not os.path.isfile(os.path.join(source, SQUAD_TRAIN_REBUILT.path)):
            raise NLGError(f"{os.path.join(source, raws['train'].path)}: missing "
                           f"(and no rebuilt SQuAD train {SQUAD_TRAIN_REBUILT.path} in {source} either)")
        raws["train"] = SQUAD_TRAIN_REBUILT
    if dataset == "dart" and not os.path.isfile(os.path.join(source, raws["train"].path)):
        if not os.path.isfile(os.path.join(source, DART_TRAIN_POOL.path)):
            raise NLGError(f"{os.path.join(source, raws['train'].path)}: missing "
                           f"(and no DART training pool {DART_TRAIN_POOL.path} in {source} either)")
        raws["train"] = DART_TRAIN_POOL
    return {split: from_mirror(raw, source) for split, raw in raws.items()}


def install_vocab(vocab_dir, source, cache_dir):
    """Put the verified GPT-2 `encoder.json` and `vocab.bpe` into `vocab_dir`; return their Fetched."""
    installed = []
    for raw in VOCAB:
        fetched = download(raw, cache_dir) if source is None else from_mirror(raw, source)
        target = os.path.join(vocab_dir, os.path.basename(raw.path))
        if not (os.path.isfile(target) and sha256_file(target) == fetched.sha256):
            with open(fetched.local, "rb") as original, atomic_open(target, binary=True) as f:
                shutil.copyfileobj(original, f)
        installed.append(_verify(raw, target, raw.sha256))
    return installed

