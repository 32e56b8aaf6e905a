"""Parent <-> child control channel: one JSON object per line over the child's stdin/stdout.

Parent: ``child = await Child.start("viewers", log_path); reply = await child.call("offer", id="v1")``.
Child: ``await serve({"offer": handler, ...}, on_exit)`` where each handler takes the request's fields as
keyword arguments and returns a JSON-able dict. A failing handler answers ``{"error": "..."}`` (raised as
``ChildError`` in the parent). Children must write nothing else to stdout; logs go to stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import sys
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil

BENCH_DIR = Path(__file__).resolve().parent.parent
_LINE_LIMIT = 16 * 1024 * 1024

Handler = Callable[..., Awaitable[dict[str, Any]]]


class ChildError(RuntimeError):
    pass


class Child:
    """A ``python -m media.worker <role>`` process and its request/reply channel."""

    def __init__(self, role: str, process: asyncio.subprocess.Process) -> None:
        self.role = role
        self.process = process
        self.pid = process.pid
        self.ps = psutil.Process(process.pid)
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, role: str, log_path: Path, *args: str) -> Child:
        path = os.pathsep.join(filter(None, [str(BENCH_DIR), os.environ.get("PYTHONPATH")]))
        env = dict(os.environ, PYTHONPATH=path)
        with log_path.open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "media.worker",
                role,
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=env,
                limit=_LINE_LIMIT,
            )
        return cls(role, process)

    async def call(self, op: str, timeout: float = 30.0, **fields: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self.process.stdin.write(json.dumps({"id": request_id, "op": op, "args": fields}).encode() + b"\n")
        await self.process.stdin.drain()
        try:
            reply = await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(request_id, None)
        if "error" in reply:
            raise ChildError(f"{self.role} {op}: {reply['error']}")
        return reply

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            reply = json.loads(line)
            future = self._pending.get(reply.pop("id", None))
            if future is not None and not future.done():
                future.set_result(reply)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ChildError(f"{self.role} exited (code {self.process.returncode})"))

    def cpu_seconds(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    async def stop(self, timeout: float = 10.0) -> None:
        """Ask for a clean exit (closes its peers), then terminate, then kill."""
        if self.process.returncode is None:
            with contextlib.suppress(ChildError, TimeoutError, ConnectionError):
                await self.call("exit", timeout=timeout)
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self._reader.cancel()


async def serve(handlers: dict[str, Handler], on_exit: Callable[[], Awaitable[None]]) -> None:
    """Child side: answer requests until stdin closes or ``exit`` arrives; then run ``on_exit``."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout.buffer
    running: set[asyncio.Task[None]] = set()
    done = asyncio.Event()

    def reply(request_id: int, body: dict[str, Any]) -> None:
        out.write(json.dumps({"id": request_id, **body}).encode() + b"\n")
        out.flush()

    async def handle(request: dict[str, Any]) -> None:
        request_id, op = request["id"], request["op"]
        if op == "exit":
            await on_exit()
            reply(request_id, {})
            done.set()
            return
        try:
            body = await handlers[op](**request["args"])
        except Exception as exc:
            traceback.print_exc()
            body = {"error": f"{type(exc).__name__}: {exc}"}
        reply(request_id, body)

    async def read() -> None:
        while line := await reader.readline():
            task = asyncio.create_task(handle(json.loads(line)))
            running.add(task)
            task.add_done_callback(running.discard)
        await on_exit()  # parent gone without saying exit: still close peers cleanly
        done.set()

    reading = asyncio.create_task(read())
    await done.wait()
    reading.cancel()
