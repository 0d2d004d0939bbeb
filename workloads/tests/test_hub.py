"""Loading models from a Hugging Face Hub, for real, against a local hub on 127.0.0.1.

The suite runs offline (conftest.py sets HF_HUB_OFFLINE=1); each test here points
HF_ENDPOINT at its own server (``local_hub.LocalHub``) with HF_HUB_OFFLINE=0 and an empty
HF_HOME. ``huggingface_hub`` reads those variables when it is imported, which happened
before the test, so the fixture sets its ``constants`` to the same values; the
gen_workload test runs the tool in a fresh process that reads the environment alone.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants

from tools.gen_workload import default_name
from workloads.csvschema import read_workload
from workloads.models import ModelError, load_model
from workloads.tests.local_hub import LocalHub, make_gpt2_repo
from workloads.tests.tiny_models import write_text

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_ID = "spatten-test/tiny-gpt2"
GATED_ID = "spatten-test/gated-gpt2"
NO_CONFIG_ID = "spatten-test/no-config"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hub-assets")
    text = write_text(root / "text.txt", 1400)
    model_dir = make_gpt2_repo(root / "tiny-gpt2", text, vocab=128)
    bare = root / "no-config"
    bare.mkdir()
    (bare / "README.md").write_text("a repository without config.json\n")
    return {"text": text, "model": model_dir, "bare": bare}


@pytest.fixture()
def hub(served: dict[str, Path]):
    server = LocalHub(
        {MODEL_ID: served["model"], GATED_ID: served["model"], NO_CONFIG_ID: served["bare"]}, gated=(GATED_ID,)
    ).start()
    yield server
    server.stop()


def _point_hf_at(monkeypatch: pytest.MonkeyPatch, url: str, hf_home: Path, offline: bool = False) -> None:
    for name, value in (("HF_ENDPOINT", url), ("HF_HOME", str(hf_home)), ("HF_HUB_OFFLINE", "1" if offline else "0")):
        monkeypatch.setenv(name, value)
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HOME", str(hf_home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(constants, "HF_ASSETS_CACHE", str(hf_home / "assets"))
    monkeypatch.setattr(constants, "HF_XET_CACHE", str(hf_home / "xet"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(hf_home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(hf_home / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_download_into_empty_cache_then_reuse(hub: LocalHub, served, tmp_path: Path, monkeypatch) -> None:
    from transformers import GPT2LMHeadModel

    hf_home = tmp_path / "hf"
    _point_hf_at(monkeypatch, hub.url, hf_home)
    lm = load_model(MODEL_ID)
    got = {p.rsplit("/", 1)[1] for p in hub.downloads()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= got, got
    sha = hub.repos[MODEL_ID].sha
    snap = hf_home / "hub" / "models--spatten-test--tiny-gpt2" / "snapshots" / sha
    assert (snap / "model.safetensors").read_bytes() == (served["model"] / "model.safetensors").read_bytes()
    assert (hf_home / "hub" / "models--spatten-test--tiny-gpt2" / "refs" / "main").read_text() == sha
    assert lm.model_type == "gpt2" and lm.causal and lm.name == MODEL_ID
    _same_weights(lm.model, GPT2LMHeadModel.from_pretrained(served["model"], dtype=torch.float32))
    ids = lm.tokenizer(served["text"].read_text()).input_ids
    assert len(ids) >= 1056 and max(ids) < lm.model.config.vocab_size

    # second call: the cache is used, no file is downloaded again
    hub.requests.clear()
    lm2 = load_model(MODEL_ID)
    assert hub.downloads() == []
    assert hub.requests, "the hub was asked whether the cached copy is current"
    _same_weights(lm.model, lm2.model)

    # offline, from the cache: not a single request
    _point_hf_at(monkeypatch, hub.url, hf_home, offline=True)
    hub.requests.clear()
    _same_weights(lm.model, load_model(MODEL_ID).model)
    assert hub.requests == []


def test_unknown_id_says_so(hub: LocalHub, tmp_path: Path, monkeypatch) -> None:
    _point_hf_at(monkeypatch, hub.url, tmp_path / "hf")
    with pytest.raises(ModelError) as err:
        load_model("spatten-test/no-such-model")
    msg = str(err.value)
    assert msg.startswith(f"spatten-test/no-such-model: no model named 'spatten-test/no-such-model' on {hub.url}")
    assert "HTTP 404" in msg and "Repository not found" in msg
    assert hub.downloads() == []


def test_gated_model_gets_the_hubs_reason(hub: LocalHub, tmp_path: Path, monkeypatch) -> None:
    _point_hf_at(monkeypatch, hub.url, tmp_path / "hf")
    with pytest.raises(ModelError) as err:
        load_model(GATED_ID)
    msg = str(err.value)
    assert f"{GATED_ID} is a gated model" in msg and f"Ask for it on {hub.url}/{GATED_ID}" in msg
    assert "HTTP 403" in msg and "is restricted" in msg


def test_repository_without_config(hub: LocalHub, tmp_path: Path, monkeypatch) -> None:
    _point_hf_at(monkeypatch, hub.url, tmp_path / "hf")
    with pytest.raises(ModelError) as err:
        load_model(NO_CONFIG_ID)
    assert "config.json" in str(err.value) and str(err.value).startswith(f"{NO_CONFIG_ID}: cannot load model")


def test_unreachable_hub_says_so_within_seconds(hub: LocalHub, tmp_path: Path, monkeypatch, caplog) -> None:
    dead = f"http://127.0.0.1:{_closed_port()}"
    hf_home = tmp_path / "hf"
    _point_hf_at(monkeypatch, dead, hf_home)
    t0 = time.monotonic()
    with pytest.raises(ModelError) as err:
        load_model(MODEL_ID)
    elapsed = time.monotonic() - t0
    msg = str(err.value)
    assert f"cannot reach the Hugging Face Hub at {dead}" in msg
    assert "not in the HF cache" in msg and "HF_HUB_OFFLINE=1" in msg
    assert "local model directory" in msg and ".gguf" in msg and "smollm2-135m" in msg
    assert elapsed < 3.0, f"{elapsed:.1f} s to report an unreachable hub"

    # with a cached copy, an unreachable hub is not an error: the cache is used, with a warning
    _point_hf_at(monkeypatch, hub.url, hf_home)
    load_model(MODEL_ID)
    _point_hf_at(monkeypatch, dead, hf_home)
    t0 = time.monotonic()
    with caplog.at_level("WARNING", logger="workloads.models"):
        lm = load_model(MODEL_ID)
    assert time.monotonic() - t0 < 10
    assert lm.model_type == "gpt2"
    assert any("cannot reach the Hugging Face Hub" in r.message and "HF cache" in r.message for r in caplog.records)


def test_silent_hub_times_out_quickly(tmp_path: Path, monkeypatch) -> None:
    """A host that accepts the connection and never answers: the probe's timeout, no retries."""
    from workloads import hub as hubmod

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections complete in the backlog; nothing is ever read or sent
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        _point_hf_at(monkeypatch, url, tmp_path / "hf")
        monkeypatch.setattr(hubmod, "PROBE_TIMEOUT_S", 1.0)
        t0 = time.monotonic()
        with pytest.raises(ModelError) as err:
            load_model(MODEL_ID)
        elapsed = time.monotonic() - t0
    assert f"cannot reach the Hugging Face Hub at {url}" in str(err.value)
    assert "Timeout" in str(err.value) and "within 1 s" in str(err.value)
    assert 1.0 <= elapsed < 3.0, elapsed


def test_not_a_hub(tmp_path: Path, monkeypatch) -> None:
    """An HF_ENDPOINT that answers like a plain web server, not like the hub."""
    import http.server
    import threading

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_error(404)

        def log_message(self, *_a) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        _point_hf_at(monkeypatch, url, tmp_path / "hf")
        with pytest.raises(ModelError) as err:
            load_model(MODEL_ID)
    finally:
        server.shutdown()
        server.server_close()
    assert f"{url} answered HTTP 404 for {url}/api/models/{MODEL_ID} without a hub error" in str(err.value)


def test_default_names() -> None:
    assert default_name("gpt2", 1024, 32, "spatten-default", True) == "gpt2.csv"
    assert default_name("HuggingFaceTB/SmolLM2-135M", 1024, 32, "spatten-default", True) == (
        "HuggingFaceTB--SmolLM2-135M.csv"
    )
    assert default_name("gpt2", 512, 8, "spatten-kv30", True) == "gpt2-ctx512-s8-spatten-kv30.csv"
    assert default_name("gpt2", 1024, 16, "spatten-default", True) == "gpt2-s16.csv"
    assert default_name("minilm-l6", 128, 0, "spatten-default", False) == "minilm-l6-ctx128.csv"
    assert default_name("smollm2-135m", 1024, 32, "spatten-default", True) == "smollm2-135m.csv"


def test_gen_workload_downloads_and_names_by_id(hub: LocalHub, served, tmp_path: Path) -> None:
    """The tool in a fresh process, configured by the environment alone, default settings."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="0")
    cmd = [sys.executable, "tools/gen_workload.py", "--model", MODEL_ID, "--text", str(served["text"]),
           "--out", str(out_dir), "--tensors", "--quiet"]
    res = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr + res.stdout
    csv_path = out_dir / "spatten-test--tiny-gpt2.csv"
    assert sorted(os.listdir(out_dir)) == ["spatten-test--tiny-gpt2.csv", "spatten-test--tiny-gpt2.npz"]
    assert res.stdout.rstrip().splitlines()[-1] == f"simulate it: python run.py {csv_path}"
    assert "model.safetensors" in " ".join(hub.downloads())
    wl = read_workload(csv_path)
    assert sorted({r.iteration_id for r in wl.rows}) == list(range(32))
    assert {r.layer_id for r in wl.rows} == {0, 1}
    assert wl.rows[0].sentence_length_L == 1025 and wl.rows[-1].sentence_length_L == 1056


def test_eval_accuracy_second_model_by_hub_id(hub: LocalHub, served, tmp_path: Path, monkeypatch) -> None:
    """The second-model path of the accuracy evaluation: --model <HF id> through the hub
    loader (a tiny random-weight GPT-2 here), with eviction and KIVI policies."""
    import json  # noqa: PLC0415

    from click.testing import CliRunner  # noqa: PLC0415

    from tools.eval_accuracy import main as eval_main  # noqa: PLC0415

    _point_hf_at(monkeypatch, hub.url, tmp_path / "hf")
    out = tmp_path / "acc" / "tiny"
    res = CliRunner().invoke(eval_main, ["--model", MODEL_ID, "--text", str(served["text"]), "--context", "64",
                                         "--eval-tokens", "24", "--policy", "streaming", "--policy",
                                         "kivi@quantization.group_tokens=8@quantization.residual_tokens=8",
                                         "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["model"] == MODEL_ID
    rows = {r["policy"]: r for r in data["results"]}
    assert set(rows) == {"dense", "streaming", "kivi@quantization.group_tokens=8@quantization.residual_tokens=8"}
    assert rows["dense"]["kv_fraction"] == 1.0 and rows["streaming"]["kv_fraction"] < 0.5
    assert all(r["tokens"] == 24 and math.isfinite(r["ppl"]) for r in rows.values())
    assert "model.safetensors" in " ".join(hub.downloads())
