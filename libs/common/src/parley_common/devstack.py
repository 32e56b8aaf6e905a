"""`make run`: nats-server with JetStream and every service on this machine, until Ctrl-C.

Data lives under `.data/` (JetStream store and the SQLite databases), so it survives a restart. The
gateway listens on http://127.0.0.1:8080 unless `PARLEY_HTTP_PORT` says otherwise.
`PARLEY_NATS_CLUSTER=3` (`make run NATS_CLUSTER=3`) runs NATS as a three-server JetStream cluster (client
ports `PARLEY_NATS_PORT` and the next two, stores under `.data/nats/nats-<i>`) with every stream in three
copies. The runner supervises its children: one that dies is reported and restarted with backoff
(nats-server on the same port and store), the others keep running.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

import msgspec

from parley_common.config import DEV_JWT_SECRET, env_float, env_int, env_str
from parley_common.processes import LocalStack, Supervisor

DEV_OAUTH_CLIENT = ("parley-dev", "parley-dev-secret", "parley-dev")
# Started in this order; the gateway last so that it finds the others answering.
SERVICES = (
    ("conference", "parley_conference"),
    ("snapshot", "parley_snapshot"),
    ("chat", "parley_chat"),
    ("media-0", "parley_media"),
    ("gateway", "parley_gateway"),
)
# Per-service settings: the media node's id names its request subjects (parley.media.media-0.<op>).
SERVICE_ENV = {"media-0": {"PARLEY_MEDIA_NODE_ID": "media-0"}}
# Prometheus metrics: each service but the gateway (its HTTP port, /metrics) on its own fixed port, from
# PARLEY_METRICS_BASE_PORT up in the order of SERVICES.
METRICS_BASE_PORT = 9101
# Ready means every service started here is ready: the gateway's /health/ready covers them all.
# The health name each module answers to; chat is essential as soon as `make run` starts it.
HEALTH_NAMES = {
    "parley_conference": "conference",
    "parley_snapshot": "snapshot",
    "parley_media": "media",
    "parley_chat": "chat",
}
READY_SERVICES = ",".join(dict.fromkeys(HEALTH_NAMES[m] for _, m in SERVICES if m in HEALTH_NAMES))


class Credentials(msgspec.Struct, frozen=True, kw_only=True):
    """Which identity settings `make run` passes on, and whether it may print them."""

    # The public development secret is in use: the only case where credentials are registered by
    # default and printed (they are public anyway).
    development: bool
    # Variables to set for the children; a configured secret is inherited from this process's
    # environment instead, so that it is never copied anywhere it could be shown.
    env: dict[str, str]


def credentials(environ: Mapping[str, str]) -> Credentials:
    """The development credentials only with the development secret (the gateway's own rule).

    With a real `PARLEY_JWT_SECRET` (or an external IdP key) nothing is added: the gateway registers only
    what `PARLEY_OAUTH_CLIENTS` says, which it reads from the inherited environment.
    """
    secret = environ.get("PARLEY_JWT_SECRET", "").strip()
    public_key = any(
        environ.get(k, "").strip() for k in ("PARLEY_JWT_PUBLIC_KEY", "PARLEY_JWT_PUBLIC_KEY_FILE")
    )
    development = secret == DEV_JWT_SECRET or (not secret and not public_key)
    if not development:
        return Credentials(development=False, env={})
    client_id, client_secret, organization = DEV_OAUTH_CLIENT
    env = {"PARLEY_JWT_SECRET": DEV_JWT_SECRET}
    if not environ.get("PARLEY_OAUTH_CLIENTS", "").strip():
        env["PARLEY_OAUTH_CLIENTS"] = f"{client_id}:{client_secret}:{organization}"
    return Credentials(development=True, env=env)


def main() -> int:
    data_dir = Path(env_str("PARLEY_DATA_DIR", ".data")).resolve()
    http_port = env_int("PARLEY_HTTP_PORT", 8080)
    nats_port = env_int("PARLEY_NATS_PORT", 4222)
    nats_cluster = env_int("PARLEY_NATS_CLUSTER", 1)
    ready_timeout = env_float("PARLEY_READY_TIMEOUT_SECONDS", 60.0)
    metrics_base = env_int("PARLEY_METRICS_BASE_PORT", METRICS_BASE_PORT)
    identity = credentials(os.environ)
    env = {
        "PARLEY_DATA_DIR": str(data_dir),
        "PARLEY_HTTP_PORT": str(http_port),
        **identity.env,
        "PARLEY_ESSENTIAL_SERVICES": os.environ.get("PARLEY_ESSENTIAL_SERVICES", READY_SERVICES),
        "PARLEY_OPTIONAL_SERVICES": os.environ.get("PARLEY_OPTIONAL_SERVICES", ""),
    }
    stack = LocalStack(
        data_dir,
        list(SERVICES),
        env=env,
        service_env=SERVICE_ENV,
        nats_port=nats_port,
        metrics_ports=metrics_ports(metrics_base),
        nats_cluster=nats_cluster,
        # On a terminal the services log to it; otherwise (CI, background) to files under .data/logs.
        log_dir=None if sys.stderr.isatty() else data_dir / "logs",
    )
    supervisor = stack.supervisor(say)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True
        # Before anything else: the children get the same Ctrl-C and exit on purpose.
        supervisor.stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        stack.start()
        ready = wait_ready(f"http://127.0.0.1:{http_port}", ready_timeout, supervisor, lambda: stopping)
        if stopping:
            return 0
        if ready is not None:
            say(
                f"not ready after {ready_timeout:g} s (PARLEY_READY_TIMEOUT_SECONDS): /health/ready says "
                f"{ready}; see the services' logs"
                + ("" if stack.log_dir is None else f" under {stack.log_dir}")
                + "; stopping everything"
            )
            return 1
        print(banner(http_port, stack.nats_url, data_dir, identity, stack), flush=True)
        while not stopping:
            supervisor.tick()
            time.sleep(0.2)
    finally:
        supervisor.stop()
        stack.stop()
        say("stopped")
    return 0


def metrics_ports(base: int) -> dict[str, int]:
    """Each service but the gateway on its own fixed metrics port, for a local Prometheus."""
    names = [name for name, module in SERVICES if module != "parley_gateway"]
    return {name: base + index for index, name in enumerate(names)}


def say(line: str) -> None:
    print(f"parley: {line}", flush=True)


def wait_ready(base: str, timeout: float, supervisor: Supervisor, stopping: Callable[[], bool]) -> str | None:
    """Poll `/health/ready` until it answers 2xx (None), supervising meanwhile; else what is not ready."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline and not stopping():
        supervisor.tick()
        try:
            with urllib.request.urlopen(f"{base}/health/ready", timeout=2) as response:
                if 200 <= response.status < 300:
                    return None
        except urllib.error.HTTPError as exc:
            last = f"{exc.code} ({_unhealthy(base)})"
        except (urllib.error.URLError, OSError):
            last = "no answer (gateway not listening)"
        time.sleep(0.2)
    return last


def _unhealthy(base: str) -> str:
    """The dependencies /health reports down, to name what the stack is waiting for."""
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=3) as response:
            report = json.load(response)
        down = [d["name"] for d in report["dependencies"] if not d["isHealthy"]]
    except (OSError, ValueError, KeyError, TypeError):
        return "health unknown"
    return "down: " + ", ".join(down) if down else "nothing reported down"


def banner(
    http_port: int, nats_url: str, data_dir: Path, identity: Credentials, stack: LocalStack | None = None
) -> str:
    base = f"http://127.0.0.1:{http_port}"
    text = f"""
Parley is running.
  gateway      {base}            (API docs: {base}/docs, events: {base}/asyncapi)
  nats         {nats_url}        (JetStream data under {data_dir})
  media node   media-0           (WebRTC from this machine's interfaces; no STUN/TURN configured)
"""
    if stack is not None:
        for index, name in enumerate(stack.processes):
            label = "metrics" if index == 0 else ""
            text += f"  {label:<12} {stack.metrics_url(name):<34}({name})\n"
    if identity.development:
        client_id, client_secret, organization = DEV_OAUTH_CLIENT
        text += f"""
Development credentials (never use these in production):
  OAuth client  id={client_id}  secret={client_secret}  organization={organization}
  JWT secret    {DEV_JWT_SECRET}

  TOKEN=$(.venv/bin/parley-token --user alice --org {organization})
  or, as the OAuth client (no jq needed):
  TOKEN=$(curl -s -u {client_id}:{client_secret} -d grant_type=client_credentials \\
          {base}/security/oauth/token \\
          | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  curl -s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{{}}' \\
       {base}/rtc-api/conferences/create
"""
    else:
        # Configured credentials are the operator's: named, never shown.
        text += """
Credentials: PARLEY_JWT_SECRET (or the configured IdP key) and the clients of PARLEY_OAUTH_CLIENTS,
  as configured; no development client is registered.
"""
    return text + "\nCtrl-C stops everything.\n"


if __name__ == "__main__":
    sys.exit(main())
