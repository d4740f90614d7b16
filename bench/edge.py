"""Edge benchmark: what the balancer in front of every OverCloud's URL costs a request.

Everything on 127.0.0.1, no LXD: two backend processes answer HTTP/1.1 with a fixed 4 KiB
page (asyncio, keep-alive, like a web node's nginx would for a cached page); the edge
(`edge.server.Edge`, the real one, in a process of its own) routes a port to both. A load
generator process runs `--clients` concurrent keep-alive clients for `--seconds`, first
straight at one backend (the baseline), then through the edge, alternating `--rounds` times.

Printed per round and as medians: requests/s and p50/p99 latency each way, the ratio
through-the-edge / direct, and the edge's CPU (cores) during its rounds. The backends are
far cheaper than WordPress (whose page costs 20-100 ms of PHP here), so the ratio is an
upper bound on what the edge takes from a real page.

    .venv/bin/python bench/edge.py [--clients 32] [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import print_machine

from edge.routes import write_json

PAGE = b"x" * 4096
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: "
            + str(len(PAGE)).encode() + b"\r\n\r\n" + PAGE)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def backend(port: int) -> None:
    async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while await r.readuntil(b"\r\n\r\n"):
                w.write(RESPONSE)
                await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            w.close()

    async def main() -> None:
        srv = await asyncio.start_server(serve, "127.0.0.1", port, backlog=1024)
        async with srv:
            await srv.serve_forever()

    asyncio.run(main())


def edge_process(routes: Path, status: Path) -> None:
    from edge.server import Edge

    async def main() -> None:
        await Edge(routes, status).run(asyncio.Event())

    asyncio.run(main())


def load(port: int, clients: int, seconds: float, out: mp.Queue) -> None:  # type: ignore[type-arg]
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    lat: list[float] = []

    async def client(deadline: float) -> None:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            w.write(request)
            await w.drain()
            await r.readuntil(b"\r\n\r\n")
            await r.readexactly(len(PAGE))
            lat.append(time.perf_counter() - t0)
        w.close()

    async def main() -> float:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(t0 + seconds) for _ in range(clients)))
        return time.perf_counter() - t0

    took = asyncio.run(main())
    lat.sort()
    out.put({"rps": len(lat) / took, "p50_ms": 1e3 * lat[len(lat) // 2],
             "p99_ms": 1e3 * lat[int(len(lat) * 0.99)]})


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_load(port: int, clients: int, seconds: float) -> dict[str, float]:
    q: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    p = mp.Process(target=load, args=(port, clients, seconds, q))
    p.start()
    result: dict[str, float] = q.get(timeout=seconds + 60)
    p.join(10)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="overcloud-bench-edge-"))
    b1, b2, url = _free_port(), _free_port(), _free_port()
    routes, status = tmp / "routes.json", tmp / "status.json"
    write_json(routes, {"serial": 1, "routes": {str(url): {
        "overcloud": "bench", "backends": [f"127.0.0.1:{b1}", f"127.0.0.1:{b2}"]}}})
    procs = [mp.Process(target=backend, args=(p,), daemon=True) for p in (b1, b2)]
    procs.append(mp.Process(target=edge_process, args=(routes, status), daemon=True))
    for p in procs:
        p.start()
    edge_pid = procs[-1].pid
    assert edge_pid is not None
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if url in json.loads(status.read_text()).get("listening", []):
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        print_machine()
        print(f"# {args.clients} keep-alive clients, {args.seconds:g}s per run, 4 KiB page")
        rows = []
        for i in range(args.rounds):
            direct = run_load(b1, args.clients, args.seconds)
            c0 = cpu_seconds(edge_pid)
            edged = run_load(url, args.clients, args.seconds)
            edge_cores = (cpu_seconds(edge_pid) - c0) / args.seconds
            ratio = edged["rps"] / direct["rps"]
            rows.append((direct, edged, ratio, edge_cores))
            print(f"round {i + 1}: direct {direct['rps']:.0f} req/s (p50 {direct['p50_ms']:.2f} "
                  f"ms, p99 {direct['p99_ms']:.2f} ms) | edge {edged['rps']:.0f} req/s (p50 "
                  f"{edged['p50_ms']:.2f} ms, p99 {edged['p99_ms']:.2f} ms) | ratio "
                  f"{ratio:.2f} | edge CPU {edge_cores:.2f} cores")

        def med(key: str, which: int) -> float:
            return statistics.median(float(r[which][key]) for r in rows)  # type: ignore[index]

        print(f"median: direct {med('rps', 0):.0f} req/s, edge {med('rps', 1):.0f} req/s, "
              f"ratio {statistics.median(r[2] for r in rows):.2f}; added p50 "
              f"{med('p50_ms', 1) - med('p50_ms', 0):.2f} ms, p99 edge {med('p99_ms', 1):.2f} "
              f"ms vs {med('p99_ms', 0):.2f} ms; edge CPU "
              f"{statistics.median(r[3] for r in rows):.2f} cores")
    finally:
        for p in procs:
            p.terminate()
            p.join(5)


if __name__ == "__main__":
    main()
