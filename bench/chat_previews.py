"""Chat previews (issue 11): a 256x256 thumbnail of a 4000x3000 JPEG and of a PDF page, first render and
cached, next to `vipsthumbnail` on the same files in the same run.

Starts its own stack (nats-server, chat, conference and gateway) on free ports with a throwaway data
directory. Seeds one group room and, for each run, a fresh copy of each file uploaded as an attachment
(`POST /rooms/{roomId}/attachments`), so every first render really renders. Then measures, p50/p99
over `--runs`:

- `GET /preview/image/{id}/256x256/thumbnail` and `GET /preview/pdf/{id}/256x256/thumbnail`, first call
  (rendered: `X-Preview-Cache: miss`) and the same call again (`hit`, answered from the object store);
- `GET /attachments/{id}/download` of a 2 KB attachment: the target's "as fast as a small download";
- the render alone in this process (`parley_chat.previews`, what the service runs in its pool);
- `vipsthumbnail FILE --size 256x256 --smartcrop centre` (a process per call, as a previewer would run
  it), on the same files. Install it with `sudo apt-get install libvips-tools` (Debian/Ubuntu); when it
  is absent (or cannot load PDFs) its rows are skipped with the reason printed.

    uv run python bench/chat_previews.py [--runs 30]

Targets: a first render within 2x of vipsthumbnail; a cached preview as fast as a small download.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import jwt
import uvloop
from parley_chat import previews
from parley_common.processes import LocalStack, free_port, wait_for_port
from PIL import Image, ImageDraw
from timing import pct, timed

SECRET = "bench-secret-bench-secret-bench-secret"
ORG = "bench"
AREA = "256x256"


def photo() -> bytes:
    """A 4000x3000 JPEG with detail (gradients and shapes), as a camera would give."""
    image = Image.linear_gradient("L").resize((4000, 3000)).convert("RGB")
    draw = ImageDraw.Draw(image)
    for i in range(0, 4000, 160):
        draw.ellipse((i, (i * 3) % 2600, i + 400, (i * 3) % 2600 + 400), fill=(i % 255, 90, 255 - i % 255))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def document(picture: bytes) -> bytes:
    """A 3-page A4 PDF (Pillow's writer), each page a 150 dpi scan: PDFium decodes and draws it."""
    page = Image.open(io.BytesIO(picture)).resize((1240, 1754))
    out = io.BytesIO()
    page.save(out, "PDF", resolution=150.0, save_all=True, append_images=[page, page])
    return out.getvalue()


def small_png() -> bytes:
    out = io.BytesIO()
    Image.effect_noise((24, 24), 60).convert("RGB").save(out, "PNG")
    return out.getvalue()


def vips_rows(files: dict[str, Path], runs: int, out_dir: Path) -> list[tuple[str, list[float]]]:
    tool = shutil.which("vipsthumbnail")
    if tool is None:
        print("vipsthumbnail: not installed, its rows are skipped (sudo apt-get install libvips-tools)")
        return []
    rows = []
    for label, path in files.items():
        command = [
            tool,
            str(path),
            "--size",
            AREA,
            "--smartcrop",
            "centre",
            "-o",
            str(out_dir / "%s-vips.jpg"),
        ]
        probe = subprocess.run(command, capture_output=True, text=True, check=False)
        if probe.returncode != 0:
            print(f"vipsthumbnail on the {label}: skipped ({probe.stderr.strip()[:200]})")
            continue
        latencies = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run(command, capture_output=True, check=True)
            latencies.append((time.perf_counter() - started) * 1000)
        rows.append((f"vipsthumbnail {label} (a process per call)", latencies))
    return rows


async def seed_attachment(http: aiohttp.ClientSession, room_id: str, data: bytes, mime: str) -> str:
    """An attachment uploaded as a client does (`POST /rooms/{roomId}/attachments`, raw body)."""
    async with http.post(
        f"/rooms/{room_id}/attachments", data=data, headers={"fileName": "file", "mimeType": mime}
    ) as response:
        if response.status != 201:
            raise RuntimeError(f"upload answered {response.status}: {await response.text()}")
        return str((await response.json())["id"])


async def bench(runs: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="parley-bench-"))
    port = free_port()
    stack = LocalStack(
        root / "data",
        [("conference", "parley_conference"), ("chat", "parley_chat"), ("gateway", "parley_gateway")],
        env={
            "PARLEY_JWT_SECRET": SECRET,
            "PARLEY_HTTP_PORT": str(port),
            "PARLEY_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        },
        log_dir=root / "logs",
    ).start()
    jpeg_bytes, tiny = photo(), small_png()
    pdf_bytes = document(jpeg_bytes)
    files = {"JPEG 4000x3000": root / "photo.jpg", "PDF page 1": root / "doc.pdf"}
    files["JPEG 4000x3000"].write_bytes(jpeg_bytes)
    files["PDF page 1"].write_bytes(pdf_bytes)
    results: list[tuple[str, list[float]]] = []
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        users = [str(uuid.uuid4()) for _ in range(3)]

        def bearer(user: str) -> str:
            claims = {"sub": user, "org": ORG, "name": user[:8], "exp": int(time.time()) + 3600}
            return jwt.encode(claims, SECRET, algorithm="HS256")

        headers = {"Authorization": f"Bearer {bearer(users[0])}"}
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}", headers=headers) as http:
            for user in users:  # each user known to the directory (their first request reports them)
                async with http.get(
                    "/users/capabilities", headers={"Authorization": f"Bearer {bearer(user)}"}
                ):
                    pass
            for _ in range(300):
                async with http.post(
                    "/rooms", json={"type": "group", "name": "bench", "membersIds": users[1:]}
                ) as response:
                    if response.status == 201:
                        room_id = (await response.json())["id"]
                        break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("the stack did not come up (no group room)")

            async def get(path: str, expect_cache: str | None = None) -> None:
                async with http.get(path) as response:
                    body = await response.read()
                    if response.status != 200 or not body:
                        raise RuntimeError(f"GET {path} answered {response.status}: {body[:200]!r}")
                    if expect_cache and response.headers.get("X-Preview-Cache") != expect_cache:
                        raise RuntimeError(f"GET {path}: expected a cache {expect_cache}")

            for label, data, mime, kind in (
                ("JPEG 4000x3000", jpeg_bytes, "image/jpeg", "image"),
                ("PDF page 1", pdf_bytes, "application/pdf", "pdf"),
            ):
                ids = [await seed_attachment(http, room_id, data, mime) for _ in range(runs + 1)]
                await get(f"/preview/{kind}/{ids[-1]}/{AREA}/thumbnail", "miss")  # warm the service
                paths = [f"/preview/{kind}/{file_id}/{AREA}/thumbnail" for file_id in ids]

                async def render_first(n: int, paths: list[str] = paths) -> None:
                    await get(paths[n], "miss")

                async def render_again(n: int, paths: list[str] = paths) -> None:
                    await get(paths[n], "hit")

                first = await timed(runs, render_first)
                cached = await timed(runs, render_again)
                results.append((f"{label}: first render (HTTP)", first))
                results.append((f"{label}: cached (HTTP)", cached))
                options = previews.image_options(AREA, fill=True)
                render = previews.render_pdf_thumbnail if kind == "pdf" else previews.render_image
                local = []
                for _ in range(runs):
                    started = time.perf_counter()
                    render(data, options)
                    local.append((time.perf_counter() - started) * 1000)
                results.append((f"{label}: render alone (in process)", local))

            small = await seed_attachment(http, room_id, tiny, "image/png")
            small_path, small_label = f"/attachments/{small}/download", "small attachment download (2 KB)"
            await get(small_path)

            async def download(_: int) -> None:
                await get(small_path)

            results.append((small_label, await timed(runs, download)))
        results.extend(vips_rows(files, runs, root))
    finally:
        stack.stop()
    print(f"\n{'operation':<64} {'runs':>5} {'p50 ms':>9} {'p99 ms':>9} {'mean ms':>9}")
    for name, latencies in results:
        print(
            f"{name:<64} {len(latencies):>5} {pct(latencies, 0.5):>9.2f} {pct(latencies, 0.99):>9.2f}"
            f" {statistics.fmean(latencies):>9.2f}"
        )
    table = {name: pct(latencies, 0.5) for name, latencies in results}
    for label in files:
        vips = table.get(f"vipsthumbnail {label} (a process per call)")
        first_p50 = table[f"{label}: first render (HTTP)"]
        if vips is not None:
            verdict = "met" if first_p50 <= 2 * vips else "MISSED"
            print(f"{label}: first render p50 = {first_p50 / vips:.2f}x vipsthumbnail (target 2x: {verdict})")
        cached_p50 = table[f"{label}: cached (HTTP)"]
        small_p50 = next(p50 for name, p50 in table.items() if name.startswith("small "))
        verdict = "met" if cached_p50 <= 1.2 * small_p50 else "MISSED"
        print(f"{label}: cached p50 = {cached_p50 / small_p50:.2f}x a small download (target ~1x: {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    uvloop.run(bench(args.runs))


if __name__ == "__main__":
    main()
