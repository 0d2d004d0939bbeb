"""A minimal Hugging Face Hub on 127.0.0.1 for tests: the endpoints ``huggingface_hub``
calls for ``from_pretrained`` (repository info, file tree, ``resolve`` with HEAD and GET),
serving model directories made by the tests.

    hub = LocalHub({"spatten-test/tiny-gpt2": directory}).start()   # random free port
    ... HF_ENDPOINT=hub.url ...
    hub.stop()

Every request is recorded in ``hub.requests`` as (method, path). Unknown repositories
get 404 with ``X-Error-Code: RepoNotFound``, missing files 404 with ``EntryNotFound``,
as the real hub answers.

Run as a script to serve a tiny random-weight GPT-2 (byte-level BPE tokenizer trained on a
text file) under any id, for trying ``tools/gen_workload.py --model <id>`` by hand::

    python -m workloads.tests.local_hub --id gpt2 --port 8765
    HF_ENDPOINT=http://127.0.0.1:8765 HF_HOME=/tmp/hf python tools/gen_workload.py --model gpt2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

_RESOLVE = re.compile(r"^/(?P<repo>.+?)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_API = re.compile(r"^/api/models/(?P<repo>.+?)(?:/revision/(?P<rev>[^/]+))?$")
_TREE = re.compile(r"^/api/models/(?P<repo>.+?)/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")


class _Repo:
    def __init__(self, directory: Path) -> None:
        self.files = {
            p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
        }
        h = hashlib.sha1()
        for name, data in self.files.items():
            h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
        self.sha = h.hexdigest()
        self.etags = {name: hashlib.sha256(data).hexdigest() for name, data in self.files.items()}

    def info(self, repo_id: str) -> dict[str, object]:
        return {
            "_id": self.sha[:24],
            "id": repo_id,
            "modelId": repo_id,
            "sha": self.sha,
            "private": False,
            "gated": False,
            "disabled": False,
            "tags": ["transformers"],
            "siblings": [{"rfilename": name} for name in self.files],
        }


class LocalHub:
    """A threaded HTTP server speaking the part of the Hub API that downloads use."""

    def __init__(self, repos: dict[str, Path], host: str = "127.0.0.1", port: int = 0,
                 gated: tuple[str, ...] = ()) -> None:
        self.repos = {repo_id: _Repo(Path(d)) for repo_id, d in repos.items()}
        self.gated = set(gated)  # their files answer 403 GatedRepo (their info stays public, as on the hub)
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:  # noqa: N802
                hub._serve(self, body=False)

            def do_GET(self) -> None:  # noqa: N802
                hub._serve(self, body=True)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LocalHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def downloads(self) -> list[str]:
        """Paths of the file bodies served (GET on ``/resolve/``)."""
        with self._lock:
            return [p for m, p in self.requests if m == "GET" and "/resolve/" in p]

    def _serve(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlsplit(h.path).path)
        with self._lock:
            self.requests.append((h.command, path))
        if m := _TREE.match(path):
            repo = self.repos.get(m["repo"])
            if repo is None:
                return self._error(h, 404, "RepoNotFound", "Repository not found", body)
            prefix = (m["path"] or "").strip("/")
            entries = [
                {"type": "file", "path": n, "size": len(d), "oid": repo.etags[n]}
                for n, d in repo.files.items()
                if not prefix or n.startswith(prefix + "/")
            ]
            return self._json(h, entries, repo.sha, body)
        if m := _API.match(path):
            repo = self.repos.get(m["repo"])
            if repo is None:
                return self._error(h, 404, "RepoNotFound", "Repository not found", body)
            return self._json(h, repo.info(m["repo"]), repo.sha, body)
        if m := _RESOLVE.match(path):
            repo = self.repos.get(m["repo"])
            if repo is None:
                return self._error(h, 404, "RepoNotFound", "Repository not found", body)
            if m["repo"] in self.gated:
                return self._error(
                    h, 403, "GatedRepo", f"Access to model {m['repo']} is restricted. You must have access to it "
                    "and be authenticated to access it. Please log in.", body,
                )
            data = repo.files.get(m["file"])
            if data is None:
                return self._error(h, 404, "EntryNotFound", f"{m['file']} does not exist on \"main\"", body, repo.sha)
            start = 0
            rng = re.fullmatch(r"bytes=(\d+)-", h.headers.get("Range", ""))
            if rng and body:
                start = min(int(rng[1]), len(data))
            h.send_response(206 if start else 200)
            h.send_header("Content-Type", "application/octet-stream")
            h.send_header("Content-Length", str(len(data) - start))
            h.send_header("ETag", f'"{repo.etags[m["file"]]}"')
            h.send_header("X-Repo-Commit", repo.sha)
            h.send_header("Accept-Ranges", "bytes")
            h.end_headers()
            if body:
                h.wfile.write(data[start:])
            return None
        return self._error(h, 404, None, "Not found", body)

    @staticmethod
    def _json(h: BaseHTTPRequestHandler, obj: object, sha: str, body: bool) -> None:
        data = json.dumps(obj).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.send_header("X-Repo-Commit", sha)
        h.end_headers()
        if body:
            h.wfile.write(data)

    @staticmethod
    def _error(h: BaseHTTPRequestHandler, status: int, code: str | None, message: str, body: bool,
               sha: str | None = None) -> None:
        data = json.dumps({"error": message}).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        if code:
            h.send_header("X-Error-Code", code)
        h.send_header("X-Error-Message", message)
        if sha:
            h.send_header("X-Repo-Commit", sha)
        h.end_headers()
        if body:
            h.wfile.write(data)


def make_gpt2_repo(directory: Path, text: Path, n_positions: int = 1088, vocab: int = 512, seed: int = 0) -> Path:
    """A small GPT-2 (2 layers, 2 heads of 64, random weights) with a byte-level BPE
    tokenizer of ``vocab`` tokens trained on ``text``, saved into ``directory``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train([str(text)], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    torch.manual_seed(seed)
    eos = tok.token_to_id("<|endoftext|>")
    model = GPT2LMHeadModel(
        GPT2Config(n_layer=2, n_head=2, n_embd=128, vocab_size=tok.get_vocab_size(), n_positions=n_positions,
                   bos_token_id=eos, eos_token_id=eos)
    )
    model.save_pretrained(directory)
    fast.save_pretrained(directory)
    return directory


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--id", default="gpt2", help="repository id to serve the model under")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--text", default="/usr/share/common-licenses/GPL-3", help="text to train the tokenizer on")
    ap.add_argument("--dir", default=None, help="where to save the model (default: a temporary directory)")
    args = ap.parse_args()
    import tempfile

    directory = Path(args.dir or tempfile.mkdtemp(prefix="local-hub-"))
    make_gpt2_repo(directory, Path(args.text))
    hub = LocalHub({args.id: directory}, port=args.port).start()
    print(f"serving {args.id} ({directory}) at {hub.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        hub.stop()


if __name__ == "__main__":
    main()
