"""Fan-out benchmark: one 640x480 30 fps VP8 publisher, N aiortc viewers, three SFUs side by side.

Systems, each measured alone in its own process:
  parley  Parley's media node, ``python -m parley_media`` (``MediaEngine`` behind NATS), driven over a real
          nats-server as the conference service drives it: forwards encoded VP8.
  engine  (only with ``--systems``) the bare ``MediaEngine`` in a child process with a stdin/stdout
          channel: the same figures without the node's NATS side (heartbeats, event consumer);
          ``--engine-keyframe-interval`` changes its PLI rate limit (``keyframe_min_interval``).
  relay   aiortc ``MediaRelay``: decodes the publisher once, re-encodes VP8 for every viewer.
  janus   Janus 1.1.2 VideoRoom (C), Debian package ``janus``, config generated at run time.

Reported per system and N (default 1, 8, 16, 32 viewers), over a steady window after a warm-up:
  SFU CPU   user+system time of the SFU process only (psutil), as % of one core, and per viewer;
  fps       frames each viewer received per second in the window (min and median over viewers);
  first     time to first frame: arrival of the first complete keyframe that decodes (a fresh VP8
            decoder checks it) at the viewer, after the answer was applied on the viewer's side
            (Parley/relay: the SFU's answer; Janus offers to subscribers, so: the viewer's own
            answer, which is then posted to Janus), p50 and max over viewers;
  pictures  viewers whose first keyframe decoded (within 20 s);
  harness   CPU of the publisher + viewer processes;
  other     CPU of everything else on the machine meanwhile (all cores; 100% = one core). SFU + harness
            + other near 100% x cores means the cores were saturated: fps and first-frame times then
            measure contention as much as the SFU (CPU seconds of the SFU stay meaningful).
Targets (Parley): every viewer >= 28 fps up to 32 viewers, SFU CPU for 32 viewers < 40% of one core,
first frame within 300 ms of the answer.

The harness is kept cheap so it does not eat the cores being measured: the publisher replays a clip
pre-encoded once per run (PyAV libvpx, ~1 Mbps, keyframes of ~25-30 KB every 3 s), so aiortc only
packetises; a PLI/FIR makes it skip to the clip's next keyframe, honouring at most one request per
``--publisher-keyframe-interval`` (0.3 s, like libwebrtc's sender; later ones wait for the interval's
end). Viewers install Parley's forwarding receive worker, so they count encoded frames and decode
nothing but their first keyframe(s) (to prove it is a picture). The publisher and the viewers live in
child processes (viewers spread over ``--viewer-procs`` processes), the SFU in its own. Viewers join
one after another (each negotiation completes before the next starts; first frames are awaited
together afterwards).

Needs: the workspace venv (aiortc 1.16.0, PyAV, psutil, aiohttp: ``uv sync --all-packages``), a
non-loopback IPv4 interface (aioice never offers 127.0.0.1), and for Janus ``apt-get install janus``
(skipped with a note if absent, or with ``--skip-janus``). Run by hand, not as a test, from the repo root:

    uv run python bench/media_fanout.py [--viewers 1,8,16,32] [--seconds 10] [--skip-janus]
        [--systems parley,relay,janus,engine] [--warmup 3] [--viewer-procs 2] [--json results.json]
        [--publisher-keyframe-interval 0.3] [--engine-keyframe-interval 0.3]

Prints a markdown table; child logs go to a temp directory printed at the start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import aiortc
import av
import psutil
from aioice.ice import get_host_addresses
from media.channel import Child
from media.clip import encode_clip
from media.janus import JanusServer, JanusSession, VideoRoom, janus_binary
from media.node import MediaNodeProcess

SYSTEMS = ("parley", "relay", "janus")
OPTIONAL_SYSTEMS = ("engine",)
FPS_TARGET, CPU_TARGET_32, TTFF_TARGET_MS = 28.0, 40.0, 300.0


@dataclass
class TrialResult:
    system: str
    viewers: int
    pictures: int = 0  # viewers that received a keyframe that decodes
    sfu_cpu_pct: float = 0.0
    fps_min: float = 0.0
    fps_median: float = 0.0
    ttff_p50_ms: float | None = None
    ttff_max_ms: float | None = None
    harness_cpu_pct: float = 0.0
    machine_cpu_pct: float = 0.0
    window_s: float = 0.0
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def other_cpu_pct(self) -> float:
        """Everything else the machine ran meanwhile (this script, other users): contention, if high."""
        return max(0.0, self.machine_cpu_pct - self.sfu_cpu_pct - self.harness_cpu_pct)

    @property
    def cpu_per_viewer(self) -> float:
        return self.sfu_cpu_pct / self.viewers if self.viewers else 0.0


class Signalling(Protocol):
    """How one SFU is driven: publish the publisher's offer, attach one viewer (on a viewers process)."""

    async def publish(self, offer_sdp: str) -> str: ...
    async def view(self, viewers: Child, viewer_id: str) -> None: ...
    def cpu_seconds(self) -> float: ...
    async def stats(self) -> dict[str, Any]: ...
    async def stop(self) -> None: ...


class ChildSfu:
    """The bare engine or the relay in a ``media.worker`` child: the viewer offers, the SFU answers."""

    def __init__(self, child: Child) -> None:
        self.child = child

    @classmethod
    async def start(cls, system: str, logs: Path, *args: str) -> ChildSfu:
        return cls(await Child.start(system, logs / f"{system}.log", *args))

    async def publish(self, offer_sdp: str) -> str:
        return str((await self.child.call("publish", sdp=offer_sdp))["sdp"])

    async def view(self, viewers: Child, viewer_id: str) -> None:
        offer = await viewers.call("offer", id=viewer_id)
        answer = await self.child.call("view", id=viewer_id, sdp=offer["sdp"])
        await viewers.call("answer", id=viewer_id, sdp=answer["sdp"])

    def cpu_seconds(self) -> float:
        return self.child.cpu_seconds()

    async def stats(self) -> dict[str, Any]:
        return await self.child.call("stats")

    async def stop(self) -> None:
        await self.child.stop()


class NodeSfu:
    """Parley's media node process (``python -m parley_media``), driven over NATS like the conference
    service drives it: the viewer offers, the node answers."""

    def __init__(self, node: MediaNodeProcess) -> None:
        self.node = node

    @classmethod
    async def start(cls, logs: Path) -> NodeSfu:
        node = MediaNodeProcess(logs)
        await node.start(logs / "parley-node.log")
        return cls(node)

    async def publish(self, offer_sdp: str) -> str:
        return await self.node.publish(offer_sdp)

    async def view(self, viewers: Child, viewer_id: str) -> None:
        offer = await viewers.call("offer", id=viewer_id)
        await viewers.call("answer", id=viewer_id, sdp=await self.node.view(viewer_id, offer["sdp"]))

    def cpu_seconds(self) -> float:
        return self.node.cpu_seconds()

    async def stats(self) -> dict[str, Any]:
        return {}

    async def stop(self) -> None:
        await self.node.stop()


class JanusSfu:
    """Janus VideoRoom: Janus answers the publisher and offers to each subscriber."""

    def __init__(self, server: JanusServer, http: aiohttp.ClientSession, session: JanusSession) -> None:
        self.server = server
        self.http = http
        self.session = session
        self.room = VideoRoom(session)

    @classmethod
    async def start(cls, logs: Path, ice_address: str) -> JanusSfu:
        folder = Path(tempfile.mkdtemp(prefix="janus-", dir=logs))
        server = JanusServer(folder, ice_address)
        await server.start(logs / "janus.log")
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        session = JanusSession(server.url, http)
        await session.open()
        sfu = cls(server, http, session)
        await sfu.room.create()
        return sfu

    async def publish(self, offer_sdp: str) -> str:
        return await self.room.publish(offer_sdp)

    async def view(self, viewers: Child, viewer_id: str) -> None:
        handle, offer = await self.room.subscribe()
        answer = await viewers.call("accept_offer", id=viewer_id, sdp=offer)
        await self.room.start(handle, answer["sdp"])

    def cpu_seconds(self) -> float:
        return self.server.cpu_seconds()

    async def stats(self) -> dict[str, Any]:
        return {}

    async def stop(self) -> None:
        await self.session.close()
        await self.http.close()
        await self.server.stop()


def machine_busy_seconds() -> float:
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run_trial(
    system: str, n: int, args: argparse.Namespace, logs: Path, clip: Path, ice_address: str
) -> TrialResult:
    result = TrialResult(system, n)
    trial_logs = logs / f"{system}-{n}"
    trial_logs.mkdir()
    sfu: Signalling | None = None
    clients: list[Child] = []
    try:
        if system == "janus":
            sfu = await JanusSfu.start(trial_logs, ice_address)
        elif system == "parley":
            sfu = await NodeSfu.start(trial_logs)
        elif system == "engine" and args.engine_keyframe_interval is not None:
            sfu = await ChildSfu.start(system, trial_logs, str(args.engine_keyframe_interval))
        else:
            sfu = await ChildSfu.start(system, trial_logs)
        publisher = await Child.start(
            "publisher", trial_logs / "publisher.log", str(clip), str(args.publisher_keyframe_interval)
        )
        clients.append(publisher)
        procs = [
            await Child.start("viewers", trial_logs / f"viewers-{i}.log")
            for i in range(min(args.viewer_procs, n))
        ]
        clients.extend(procs)

        offer = await publisher.call("offer")
        await publisher.call("answer", sdp=await sfu.publish(offer["sdp"]))
        state = (await publisher.call("connected", timeout=30, wait=20.0))["state"]
        if state != "connected":
            raise RuntimeError(f"publisher {state}")
        await asyncio.sleep(0.5)  # media flowing into the SFU before anyone views

        for i in range(n):
            await sfu.view(procs[i % len(procs)], f"viewer-{i}")
        await asyncio.gather(*(p.call("first_frames", timeout=60, wait=20.0) for p in procs))
        await asyncio.sleep(args.warmup)

        cpu0, harness0, machine0, t0 = (
            sfu.cpu_seconds(),
            sum(c.cpu_seconds() for c in clients),
            machine_busy_seconds(),
            time.monotonic(),
        )
        await asyncio.gather(*(p.call("mark", name="start") for p in procs))
        await asyncio.sleep(args.seconds)
        await asyncio.gather(*(p.call("mark", name="end") for p in procs))
        wall = time.monotonic() - t0
        cpu1, harness1, machine1 = (
            sfu.cpu_seconds(),
            sum(c.cpu_seconds() for c in clients),
            machine_busy_seconds(),
        )

        reports: dict[str, Any] = {}
        for p in procs:
            reports.update((await p.call("report", start="start", end="end"))["viewers"])
        fps = [r["fps"] for r in reports.values()]
        ttff = [r["ttff_ms"] for r in reports.values() if r["ttff_ms"] is not None]
        result.pictures = sum(1 for r in reports.values() if r["decodable"])
        result.sfu_cpu_pct = (cpu1 - cpu0) / wall * 100
        result.harness_cpu_pct = (harness1 - harness0) / wall * 100
        result.machine_cpu_pct = (machine1 - machine0) / wall * 100
        result.window_s = wall
        result.fps_min, result.fps_median = min(fps), statistics.median(fps)
        if ttff:
            result.ttff_p50_ms, result.ttff_max_ms = percentile(ttff, 0.5), max(ttff)
        connects = [r["connect_ms"] for r in reports.values() if r["connect_ms"] is not None]
        result.extra = {
            "connect_p50_ms": percentile(connects, 0.5) if connects else None,
            "connect_max_ms": max(connects, default=None),
            # keyframes each viewer received over its whole life (clip: one per 3 s; more = PLIs/resets)
            "viewer_keyframes_median": statistics.median(r["keyframes"] for r in reports.values()),
            "ttff_ms": sorted(ttff),
            "sfu": await sfu.stats(),
            "publisher": await publisher.call("stats"),
            "bogus_keyframes": sum(r["bogus_keyframes"] for r in reports.values()),
            "not_connected": sorted(k for k, r in reports.items() if r["state"] != "connected"),
            "no_first_frame": sorted(k for k, r in reports.items() if r["ttff_ms"] is None),
        }
    except Exception as exc:  # one failing trial must not lose the others' figures
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        await asyncio.gather(*(c.stop() for c in clients), return_exceptions=True)
        if sfu is not None:
            await sfu.stop()
    return result


def fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(results: list[TrialResult]) -> str:
    lines = [
        "| system | viewers | pictures | SFU CPU % | CPU %/viewer | fps min | fps median "
        "| first frame p50 ms | first frame max ms | harness CPU % | other load % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if r.error is not None:
            lines.append(f"| {r.system} | {r.viewers} | failed: {r.error} |||||||||")
            continue
        lines.append(
            f"| {r.system} | {r.viewers} | {r.pictures}/{r.viewers} | {fmt(r.sfu_cpu_pct, 1)} "
            f"| {fmt(r.cpu_per_viewer, 2)} | {fmt(r.fps_min, 1)} | {fmt(r.fps_median, 1)} "
            f"| {fmt(r.ttff_p50_ms)} | {fmt(r.ttff_max_ms)} | {fmt(r.harness_cpu_pct)} "
            f"| {fmt(r.other_cpu_pct)} |"
        )
    return "\n".join(lines)


def verdicts(results: list[TrialResult]) -> list[str]:
    out = []
    for r in results:
        if r.system not in ("parley", "engine") or r.error is not None:
            continue
        misses = []
        if r.fps_min < FPS_TARGET:
            misses.append(f"min fps {r.fps_min:.1f} < {FPS_TARGET:.0f}")
        if r.viewers >= 32 and r.sfu_cpu_pct >= CPU_TARGET_32:
            misses.append(f"CPU {r.sfu_cpu_pct:.1f}% >= {CPU_TARGET_32:.0f}%")
        if r.ttff_max_ms is None or r.ttff_max_ms > TTFF_TARGET_MS:
            misses.append(f"first frame max {fmt(r.ttff_max_ms)} ms > {TTFF_TARGET_MS:.0f}")
        if r.pictures < r.viewers:
            misses.append(f"{r.viewers - r.pictures} viewers without a picture")
        out.append(f"{r.system} N={r.viewers}: " + ("all targets met" if not misses else "; ".join(misses)))
    return out


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", default="1,8,16,32", help="comma-separated viewer counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="steady measurement window per trial")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds after the last first frame")
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help="any of parley,relay,janus and engine (not by default)"
    )
    parser.add_argument("--skip-janus", action="store_true")
    parser.add_argument("--viewer-procs", type=int, default=2, help="processes the viewers are spread over")
    parser.add_argument(
        "--publisher-keyframe-interval",
        type=float,
        default=0.3,
        help="the publisher sends at most one requested keyframe per this many seconds (0: every PLI)",
    )
    parser.add_argument(
        "--engine-keyframe-interval",
        type=float,
        help="engine only: MediaConfig.keyframe_min_interval (s) instead of its default",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    args.viewer_counts = [int(v) for v in args.viewers.split(",") if v.strip()]
    args.system_list = [s for s in args.systems.split(",") if s and not (args.skip_janus and s == "janus")]
    unknown = set(args.system_list) - set(SYSTEMS) - set(OPTIONAL_SYSTEMS)
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)}")
    return args


async def main(argv: list[str]) -> int:
    args = parse_args(argv)
    addresses = get_host_addresses(use_ipv4=True, use_ipv6=False)
    if not addresses:
        print("no non-loopback IPv4 interface: aioice would gather no candidate", file=sys.stderr)
        return 2
    notes = []
    if "janus" in args.system_list and janus_binary() is None:
        args.system_list.remove("janus")
        notes.append("janus skipped: not installed (apt-get install janus)")
    logs = Path(tempfile.mkdtemp(prefix="media-fanout-"))
    print(f"logs: {logs}", file=sys.stderr)
    clip = logs / "clip.vp8"
    started = time.monotonic()
    size = encode_clip(clip, seconds=10.0)
    elapsed = time.monotonic() - started
    print(f"clip: {size * 8 / 10 / 1e6:.2f} Mbps, encoded in {elapsed:.1f} s", file=sys.stderr)

    results: list[TrialResult] = []
    for n in args.viewer_counts:  # interleaved, so every system sees the same machine conditions
        for system in args.system_list:
            print(f"{system} x {n} ...", file=sys.stderr, flush=True)
            result = await run_trial(system, n, args, logs, clip, addresses[0])
            print(f"  {table([result]).splitlines()[-1]}", file=sys.stderr, flush=True)
            results.append(result)

    python = f"{platform.python_implementation()} {platform.python_version()}"
    print(
        f"\nOne 640x480 30 fps VP8 publisher (~1 Mbps), {args.seconds:g} s window after {args.warmup:g} s "
        f"warm-up; {psutil.cpu_count()} cores, {python}, aiortc {aiortc.__version__}, PyAV {av.__version__}. "
        "CPU % is of one core.\n"
    )
    print(table(results))
    for line in [*verdicts(results), *notes]:
        print(f"- {line}")
    if args.json is not None:
        payload = {
            "command": " ".join(["bench/media_fanout.py", *argv]),
            "cores": psutil.cpu_count(),
            "aiortc": aiortc.__version__,
            "results": [
                {**asdict(r), "cpu_per_viewer": r.cpu_per_viewer, "other_cpu_pct": r.other_cpu_pct}
                for r in results
            ],
            "notes": notes,
        }
        args.json.write_text(json.dumps(payload, indent=2))
    return 0 if all(r.error is None for r in results) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
