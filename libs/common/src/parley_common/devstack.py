"""`make run`: nats-server with JetStream and every service on this machine, until Ctrl-C.

Data lives under `.data/` (JetStream store and the SQLite databases), so it survives a restart. The
gateway listens on http://127.0.0.1:8080 unless `PARLEY_HTTP_PORT` says otherwise.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from parley_common.config import DEV_JWT_SECRET, env_int, env_str
from parley_common.processes import LocalStack, wait_for_port

DEV_OAUTH_CLIENT = ("parley-dev", "parley-dev-secret", "parley-dev")
# Started in this order; the gateway last so that it finds the others answering.
SERVICES = (
    ("conference", "parley_conference"),
    ("snapshot", "parley_snapshot"),
    ("media-0", "parley_media"),
    ("gateway", "parley_gateway"),
)
# Per-service settings: the media node's id names its request subjects (parley.media.media-0.<op>).
SERVICE_ENV = {"media-0": {"PARLEY_MEDIA_NODE_ID": "media-0"}}


def main() -> int:
    data_dir = Path(env_str("PARLEY_DATA_DIR", ".data")).resolve()
    http_port = env_int("PARLEY_HTTP_PORT", 8080)
    nats_port = env_int("PARLEY_NATS_PORT", 4222)
    client_id, client_secret, organization = DEV_OAUTH_CLIENT
    env = {
        "PARLEY_DATA_DIR": str(data_dir),
        "PARLEY_HTTP_PORT": str(http_port),
        "PARLEY_JWT_SECRET": os.environ.get("PARLEY_JWT_SECRET", DEV_JWT_SECRET),
        "PARLEY_OAUTH_CLIENTS": os.environ.get(
            "PARLEY_OAUTH_CLIENTS", f"{client_id}:{client_secret}:{organization}"
        ),
        # /health reports the media node; /health/ready does not fail (only warns) while it is down.
        "PARLEY_OPTIONAL_SERVICES": os.environ.get("PARLEY_OPTIONAL_SERVICES", "media,snapshot"),
    }
    stack = LocalStack(
        data_dir,
        list(SERVICES),
        env=env,
        service_env=SERVICE_ENV,
        nats_port=nats_port,
        # On a terminal the services log to it; otherwise (CI, background) to files under .data/logs.
        log_dir=None if sys.stderr.isatty() else data_dir / "logs",
    )
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        stack.start()
        wait_for_port("127.0.0.1", http_port, timeout=30)
        _banner(http_port, stack.nats.url, env, data_dir)
        while not stopping:
            for process in stack.processes.values():
                if process.poll() is not None:
                    print(
                        f"parley: {process.name} exited with {process.poll()}; stopping everything",
                        flush=True,
                    )
                    stopping = True
            time.sleep(0.2)
    finally:
        stack.stop()
        print("parley: stopped", flush=True)
    return 0


def _banner(http_port: int, nats_url: str, env: dict[str, str], data_dir: Path) -> None:
    base = f"http://127.0.0.1:{http_port}"
    client_id, client_secret, organization = DEV_OAUTH_CLIENT
    print(
        f"""
Parley is running.
  gateway      {base}            (API docs: {base}/docs, OpenAPI: {base}/openapi.json)
  nats         {nats_url}        (JetStream data under {data_dir})
  media node   media-0           (WebRTC from this machine's interfaces; no STUN/TURN configured)

Development credentials (never use these in production):
  OAuth client  id={client_id}  secret={client_secret}  organization={organization}
  JWT secret    {env["PARLEY_JWT_SECRET"]}

  TOKEN=$(curl -s -u {client_id}:{client_secret} -d grant_type=client_credentials \\
          {base}/security/oauth/token | jq -r .access_token)
  or:  uv run parley-token --user alice --org {organization}
  curl -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{{}}' \\
       {base}/rtc-api/conferences/create

Ctrl-C stops everything.
""",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
