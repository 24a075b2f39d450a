"""The downloader against a real HTTP server, offline: a copy of part of the mirror served by http.server on
127.0.0.1, reached through LORA_NLG_DOWNLOAD_URL, as a machine without ../shared fills its test cache."""
import functools
import http.server
import json
import shutil
import subprocess
import sys
import threading
from typing import NamedTuple

import pytest

from lora_nlg.data import fetch
from lora_nlg.util.errors import NLGError
from lora_nlg.util.files import sha256_file
from testpaths import MIRROR, ROOT

SERVED = [raw.path for raw in fetch.VOCAB] + [raw.path for raw in fetch.RAW_SPLITS["e2e"].values()]


class Served(NamedTuple):
    root: object  # the served folder
    url: str  # its base URL, set as LORA_NLG_DOWNLOAD_URL
    requests: list  # the paths requested


@pytest.fixture
def server(tmp_path, monkeypatch):
    """The vocabulary and E2E files of the mirror, over HTTP on 127.0.0.1, set as LORA_NLG_DOWNLOAD_URL."""
    root = tmp_path / "served"
    for relative in SERVED:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(MIRROR / relative, root / relative)
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    monkeypatch.setenv(fetch.DOWNLOAD_URL_ENV, url)
    yield Served(root, url, requests)
    httpd.shutdown()
    thread.join()


def test_download_from_the_served_mirror_is_verified_and_cached(server, tmp_path):
    root, url, requests = server
    raw = fetch.RAW_SPLITS["e2e"]["valid"]
    fetched = fetch.download(raw, str(tmp_path / "cache"))
    assert fetched.verified and fetched.sha256 == raw.sha256
    assert (tmp_path / "cache" / raw.path).read_bytes() == (MIRROR / raw.path).read_bytes()
    assert requests == ["/data/e2e/valid.txt"]
    fetch.download(raw, str(tmp_path / "cache"))
    assert requests == ["/data/e2e/valid.txt"]  # the verified copy is used, nothing fetched again


def test_a_corrupt_download_is_an_error_and_is_not_kept(server, tmp_path):
    root, url, requests = server
    raw = fetch.RAW_SPLITS["e2e"]["test"]
    (root / raw.path).write_bytes((MIRROR / raw.path).read_bytes()[:-100])  # truncated on the server
    with pytest.raises(NLGError, match=f"^{url}data/e2e/test.txt: downloaded sha256 [0-9a-f]{{64}} does not match "
                                       f"the recorded {raw.sha256} .corrupt or a different file; not kept.$"):
        fetch.download(raw, str(tmp_path / "cache"))
    assert not (tmp_path / "cache" / raw.path).exists()
    assert [p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []  # no partial file either


def test_a_damaged_cached_copy_is_downloaded_again(server, tmp_path):
    raw = fetch.VOCAB[1]
    cached = tmp_path / "cache" / raw.path
    cached.parent.mkdir(parents=True)
    cached.write_text("damaged")
    assert fetch.download(raw, str(tmp_path / "cache")).verified
    assert sha256_file(str(cached)) == raw.sha256


def test_a_missing_file_is_one_line_naming_the_url_and_the_status(server, tmp_path):
    _, url, _ = server
    with pytest.raises(NLGError, match=f"^{url}data/squad/dev-v1.1.json: download failed .HTTP 404 File not found.; "
                                       f"offline\\? use --source DIR .a local mirror.$"):
        fetch.download(fetch.RAW_SPLITS["squad"]["test"], str(tmp_path / "cache"))


def test_a_file_without_a_public_url_needs_a_mirror(monkeypatch, tmp_path):
    monkeypatch.delenv(fetch.DOWNLOAD_URL_ENV, raising=False)
    with pytest.raises(NLGError, match="^data/squad/train-v1.1.reconstructed.json: no public download .only a local "
                                       "mirror has it.; use --source DIR, or set LORA_NLG_DOWNLOAD_URL"):
        fetch.download(fetch.SQUAD_TRAIN_REBUILT, str(tmp_path))


def test_prepare_without_source_downloads_through_the_served_mirror(server, tmp_path):
    """data/prepare.py as a user runs it without --source: vocabulary and E2E from the server, the same encoded
    files as from the mirror folder itself."""
    outputs = {}
    for name, source in (("served", []), ("mirror", ["--source", str(MIRROR)])):
        out = tmp_path / name
        result = subprocess.run([sys.executable, str(ROOT / "data" / "prepare.py"), "--dataset", "e2e", "--fraction",
                                 "0.02", "--seed", "110", "--out", str(out), "--vocab-dir", str(tmp_path / f"v_{name}"),
                                 "--download-dir", str(tmp_path / "downloads"), *source],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        outputs[name] = json.loads((out / "manifest.json").read_text())["files"]
    assert outputs["served"] == outputs["mirror"]
    assert sorted(p.relative_to(tmp_path / "downloads").as_posix()
                  for p in (tmp_path / "downloads").rglob("*") if p.is_file()) == sorted(SERVED)
