"""The DevLake's check of one metrics message, per point: `LineBatch` against `SampleBatch`.

The same simulated agent cycles as `bench/pipeline.py` (200 nodes × 4 variants of a 16-core
host, 25 points per message) are encoded both ways: as agents publish them now (`LineBatch`,
rendered where they were measured) and as they did before (`SampleBatch`, rendered by the
DevLake). `devlake.lineprotocol.message_lines` then turns every message into checked lines,
in one process, side by side, `--repeat` times each; the first pass of each kind is reported
apart (cold: every series key and field shape is checked in full and learned).

Prints µs of CPU per point (process time, median of the warm passes) and the ratio; and what
an agent pays to render (`encode_lines`) against encoding samples (`encode_samples`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_machine
from pipeline import node_cycles, node_names

from devlake.lineprotocol import message_lines
from overcloud.lineprotocol import encode_lines
from overcloud.samples import Sample
from overcloud.wire import encode_samples


def per_point(fn: Callable[[], int]) -> float:
    c0 = time.process_time()
    points = fn()
    return (time.process_time() - c0) / points * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--variants", type=int, default=4)
    ap.add_argument("--cores", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=7, help="warm passes of each kind")
    args = ap.parse_args(argv)
    print_machine()
    cycles: list[list[Sample]] = []
    for node in node_names(args.nodes):
        cycles += node_cycles(node, args.cores, args.variants, seed=zlib.crc32(node.encode()),
                              overcloud="bench1")
    points = sum(len(c) for c in cycles)
    kinds = {"LineBatch": encode_lines, "SampleBatch": encode_samples}
    encoded = {k: [enc(c) for c in cycles] for k, enc in kinds.items()}

    def check(kind: str) -> Callable[[], int]:
        def run() -> int:
            for m in encoded[kind]:
                message_lines(m)
            return points
        return run

    def render(kind: str) -> Callable[[], int]:
        def run() -> int:
            for c in cycles:
                kinds[kind](c)
            return points
        return run

    print(f"# {len(cycles)} messages, {points} points ({points // len(cycles)} per message)")
    cold = {k: per_point(check(k)) for k in kinds}
    warm: dict[str, list[float]] = {k: [] for k in kinds}
    agent: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(args.repeat):  # interleaved, so that a noisy neighbour hits both
        for k in kinds:
            warm[k].append(per_point(check(k)))
            agent[k].append(per_point(render(k)))
    med = {k: statistics.median(v) for k, v in warm.items()}
    enc = {k: statistics.median(v) for k, v in agent.items()}
    for k in kinds:
        print(f"DevLake check {k:11s}: {med[k]:5.2f} µs/point warm (median of {args.repeat}), "
              f"{cold[k]:6.2f} µs/point cold (first pass)")
    print(f"ratio SampleBatch / LineBatch (warm): {med['SampleBatch'] / med['LineBatch']:.2f}x")
    for k in kinds:
        print(f"agent encodes   {k:11s}: {enc[k]:5.2f} µs/point")
    return 0


if __name__ == "__main__":
    sys.exit(main())
