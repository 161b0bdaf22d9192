"""Which HTTP server carries our frontend: uvicorn + httptools, granian embedded, aiohttp.

Each candidate serves the same endpoints (server/http/endpoints.py) on the same data plane and
event loop as the real server, with the tabular model; perf_analyzer -i http drives it at
concurrency 1, 16 and 64 and the server's CPU time per request is read from /proc.

    bench/.venv-perf must exist (bash bench/setup.sh); granian is optional (pip install granian).
    .venv/bin/python bench/http_servers.py [--window-ms 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import perf_analyzer  # noqa: E402

_TICKS = os.sysconf("SC_CLK_TCK")
CANDIDATES = ("uvicorn", "granian", "aiohttp")


async def _serve(candidate: str, port: int) -> None:
    from server.app import InferenceServer, Settings, config_json
    from server.http.asgi import HttpApp
    from server.http.endpoints import Endpoints
    from server.http.server import HttpServer

    settings = Settings(ROOT / "model_repository", "127.0.0.1", 0, -1, 0)
    core = InferenceServer(settings)
    await core.start()
    endpoints = Endpoints(core.dataplane, config_json)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    if candidate == "uvicorn":
        server = HttpServer(core.dataplane, config_json, "127.0.0.1", port, 1 << 26)
        await server.start()
    elif candidate == "granian":
        from granian.constants import Interfaces
        from granian.server.embed import Server

        embedded = Server(
            HttpApp(endpoints, 1 << 26), "127.0.0.1", port, interface=Interfaces.ASGINL
        )
        asyncio.get_running_loop().create_task(embedded.serve())
    else:
        await _aiohttp(endpoints, port)
    print(f"candidate listening on {port}", flush=True)
    await stop.wait()
    os._exit(0)  # a measurement process: no graceful shutdown needed


async def _aiohttp(endpoints: Any, port: int) -> None:
    from aiohttp import web

    from server.errors import InferenceServerError
    from server.http.endpoints import Call
    from server.http.routes import route
    from server.http.status import status_for

    async def handle(request: web.Request) -> web.Response:
        arrival = time.monotonic()
        try:
            endpoint, params = route(request.method, request.path)
            body = await request.read()  # client_max_size is enforced while reading
            length = request.headers.get("Inference-Header-Content-Length")
            call = Call(params, body, int(length) if length else None, arrival)
            reply = await getattr(endpoints, endpoint)(call)
        except InferenceServerError as error:
            return web.json_response({"error": error.message}, status=status_for(error))
        headers = {"Content-Type": reply.content_type.decode()}
        if reply.header_length is not None:
            headers["Inference-Header-Content-Length"] = str(reply.header_length)
        return web.Response(status=reply.status, body=reply.body, headers=headers)

    app = web.Application(client_max_size=1 << 26)
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _measure(candidate: str, port: int, window_ms: int, out: Path) -> list[str]:
    log = open(out / f"{candidate}.log", "wb")  # noqa: SIM115 - closed below
    command = [sys.executable, __file__, "--serve", candidate, "--port", str(port)]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    rows = []
    try:
        deadline = time.monotonic() + 60
        while "candidate listening" not in (out / f"{candidate}.log").read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                return [f"| {candidate} | did not start: see {out / candidate}.log | | | |"]
            time.sleep(0.1)  # pacing while the candidate starts
        for concurrency in (1, 16, 64):
            before, start = _cpu_seconds(process.pid), time.monotonic()
            result = perf_analyzer.run(
                f"127.0.0.1:{port}", "tabular", concurrency, window_ms,
                out / f"{candidate}-{concurrency}.csv", out / f"{candidate}-{concurrency}.pa.log",
                protocol="http",
            )  # fmt: skip
            cpu = _cpu_seconds(process.pid) - before
            requests = result.throughput * (time.monotonic() - start)
            cpu_us = cpu / requests * 1e6 if requests else 0.0
            rows.append(
                f"| {candidate} | {concurrency} | {result.throughput:,.0f} | "
                f"{result.p50_ms:.2f} | {cpu_us:.0f} |{result.failure}"
            )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        log.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", choices=CANDIDATES, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=18500)
    parser.add_argument("--window-ms", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "http-servers")
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve, args.port))
        return 0
    if not perf_analyzer.available():
        print("perf_analyzer is not installed: run bash bench/setup.sh", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    print("| server | concurrency | infer/s | p50 ms | server CPU us/request |")
    print("|---|---|---|---|---|")
    for candidate in CANDIDATES:
        for row in _measure(candidate, args.port, args.window_ms, args.out):
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
