"""Hugging Face Hub access the way the HF libraries do it, with quick, plain failures.

Models and datasets named by a Hub id load through ``transformers`` / ``datasets`` as
usual: from the HF cache when present, downloaded into it otherwise (HF's own progress
bars), with ``HF_HUB_OFFLINE``, ``HF_HOME`` and ``HF_ENDPOINT`` honoured (``huggingface_hub``
reads them when it is imported). Two things are added here:

- ``probe(repo_id)``: one request for the repository's info, without retries and with a
  short timeout, before anything is downloaded. ``huggingface_hub`` retries a failed
  metadata request for up to a minute per file when nothing is cached; the probe says
  "cannot reach the hub" within seconds instead.
- ``reason(exc)``: the hub's reason for a failure (missing, gated or private repository,
  missing file, HTTP status, no connection, offline mode), in plain words, found in the
  exception chain that ``transformers`` wraps in ``OSError``.
"""

from __future__ import annotations

import httpx2
from huggingface_hub import constants
from huggingface_hub.errors import (
    DisabledRepoError,
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub import get_token, try_to_load_from_cache
from huggingface_hub.utils import get_session, hf_raise_for_status

#: Seconds to connect to the hub (and to get the repository info) before saying it is unreachable.
PROBE_TIMEOUT_S = 5.0

SHORTHANDS = "smollm2-135m, minilm-l6"


class HubUnreachable(ConnectionError):
    """The hub did not answer the probe (no network, wrong HF_ENDPOINT, firewall, timeout)."""


def endpoint() -> str:
    return constants.ENDPOINT


def cache_dir() -> str:
    return constants.HF_HUB_CACHE


def offline() -> bool:
    """True under ``HF_HUB_OFFLINE=1`` (as read by ``huggingface_hub``)."""
    return constants.is_offline_mode()


def offline_help(kind: str = "model") -> str:
    """How to work without the hub."""
    if kind == "dataset":
        return (
            f"To work offline: use a dataset already in the HF cache ({cache_dir()}) with HF_HUB_OFFLINE=1, "
            "or pass a text file with --text."
        )
    return (
        f"To work offline: use a model already in the HF cache ({cache_dir()}) with HF_HUB_OFFLINE=1, "
        "a local model directory (config.json, weights, tokenizer), a .gguf file, "
        f"or a shipped shorthand ({SHORTHANDS})."
    )


def in_cache(repo_id: str, filename: str = "config.json", repo_type: str = "model") -> bool:
    """Whether the HF cache holds ``filename`` of ``repo_id`` (its ``main``), without any request."""
    return isinstance(try_to_load_from_cache(repo_id, filename, repo_type=repo_type), str)


def probe(repo_id: str, repo_type: str = "model") -> None:
    """Ask the hub for ``repo_id``'s info once, quickly. Returns when it exists and is
    readable; raises ``HubUnreachable`` when the hub cannot be reached, or the hub's own
    error (``RepositoryNotFoundError``, ``GatedRepoError``, ``HfHubHTTPError``...)."""
    url = f"{endpoint()}/api/{repo_type}s/{repo_id}"
    # Only the token (private repositories need it): huggingface_hub's full headers fetch a
    # registry from the hub first (3 s more when it is silent).
    token = get_token()
    try:
        response = get_session().get(
            url,
            headers={"authorization": f"Bearer {token}"} if token else {},
            timeout=httpx2.Timeout(PROBE_TIMEOUT_S),
            follow_redirects=True,
        )
    except (httpx2.TransportError, OSError) as exc:
        raise HubUnreachable(
            f"cannot reach the Hugging Face Hub at {endpoint()} ({type(exc).__name__}: {exc or 'no answer'}"
            f"{f' within {PROBE_TIMEOUT_S:g} s' if isinstance(exc, httpx2.TimeoutException) else ''})"
        ) from exc
    hf_raise_for_status(response)


def _hub_error(exc: BaseException) -> BaseException | None:
    """The first huggingface_hub (or connection) error in ``exc``'s chain."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (HfHubHTTPError, EntryNotFoundError, OfflineModeIsEnabled, HubUnreachable,
                          httpx2.TransportError)):
            return e
        e = e.__cause__ or e.__context__
    return None


def _server_says(e: HfHubHTTPError) -> str:
    msg = (e.server_message or "").strip()
    status = e.response.status_code if e.response is not None else None
    parts = [f"HTTP {status}" if status else "", f"the hub says: {msg}" if msg else ""]
    said = "; ".join(p for p in parts if p)
    return f" ({said})" if said else ""


def reason(exc: BaseException, repo_id: str, repo_type: str = "model") -> str:
    """``exc`` (possibly wrapped by transformers/datasets) in plain words."""
    e = _hub_error(exc)
    page = f"{endpoint()}/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"
    if isinstance(e, GatedRepoError):
        return (
            f"{repo_id} is a gated {repo_type}: its owners must grant you access. Ask for it on {page}, "
            f"then log in (`hf auth login`, or set HF_TOKEN){_server_says(e)}"
        )
    if isinstance(e, RepositoryNotFoundError):
        return (
            f"no {repo_type} named {repo_id!r} on {endpoint()}: check the id; if it is private, "
            f"log in with an account that can read it (`hf auth login`, or set HF_TOKEN){_server_says(e)}"
        )
    if isinstance(e, DisabledRepoError):
        return f"{repo_id} has been disabled on {endpoint()}{_server_says(e)}"
    if isinstance(e, RevisionNotFoundError):
        return f"{repo_id} has no such revision (branch, tag or commit){_server_says(e)}"
    if isinstance(e, LocalEntryNotFoundError) or isinstance(e, OfflineModeIsEnabled):
        if offline():
            return (
                f"{repo_id} is not in the HF cache ({cache_dir()}) and HF_HUB_OFFLINE=1 forbids downloading it: "
                f"unset HF_HUB_OFFLINE to download it. {offline_help(repo_type)}"
            )
        return f"{repo_id} is not (completely) in the HF cache ({cache_dir()}). {offline_help(repo_type)}"
    if isinstance(e, EntryNotFoundError):
        what = "a Transformers model" if repo_type == "model" else "readable here"
        return f"{repo_id} lacks a file that is needed (so it is not {what}): {_first_line(e)}"
    if isinstance(e, HfHubHTTPError):
        resp = e.response
        if resp is not None and not e.server_message and "X-Error-Code" not in resp.headers:
            return (
                f"{endpoint()} answered HTTP {resp.status_code}{_for_url(resp)} without a hub error: "
                f"is it a Hugging Face Hub (HF_ENDPOINT)? {offline_help(repo_type)}"
            )
        return f"the hub refused the request for {repo_id}{_server_says(e) or ': ' + _first_line(e)}"
    if isinstance(e, HubUnreachable):
        return f"{e}. {offline_help(repo_type)}"
    if isinstance(e, httpx2.TransportError):
        return f"the connection to {endpoint()} failed ({type(e).__name__}: {e}). {offline_help(repo_type)}"
    return str(exc).strip() or type(exc).__name__


def _for_url(resp: httpx2.Response) -> str:
    try:
        return f" for {resp.request.url}"
    except RuntimeError:  # a response built without its request
        return ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
