"""Cost of keeping OverCloud networks apart: one filter sync, by number of OverCloud bridges.

    python bench/isolation.py [--sizes 10,100,1000] [--runs 7]      (as root: it runs nft)

Every bridge made or removed re-renders the whole filter (orchestrator/isolation.py) and
swaps it in one `nft -f` transaction. This times that (render + apply) for 10 to 1000
bridges (1024 is the most one machine holds), against the naive way of keeping such a table
current: one `nft` process per statement and set element. Both build the same rules in a table of their
own (`overcloud_ocbench`, `overcloud_ocnaive`) that matches no interface here (`ocbenchx*`);
both are deleted at the end. Medians over the runs, and the ratio in the same run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import median, print_machine

from orchestrator.isolation import apply, render, table_name


def _bridges(n: int, prefix: str) -> dict[str, tuple[str, str]]:
    """n bridges, two per OverCloud (as when its nodes use two hosts), each with its /27."""
    out = {}
    for i in range(n):
        third, fourth = 128 + i // 8, (i % 8) * 32
        out[f"{prefix}x{i}"] = (f"oc{i // 2}", f"10.231.{third}.{fourth}/27")
    return out


def _naive(prefix: str, bridges: dict[str, tuple[str, str]]) -> None:
    """The same table built the naive way: one nft process per statement and set element."""
    table = table_name(prefix)
    subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True, check=False)
    cmds = [["nft", "add", "table", "inet", table]]
    lines = [line.strip() for line in render(prefix, bridges).splitlines()]
    for i, line in enumerate(lines):
        if line.startswith("set "):
            name, kind = line.split()[1], lines[i + 1].removeprefix("type ")
            flags = "flags interval; " if lines[i + 2] == "flags interval" else ""
            cmds.append(["nft", "add", "set", "inet", table, name,
                         f"{{ type {kind}; {flags}}}"])
            elements = next((x for x in lines[i + 1:i + 4] if x.startswith("elements")), "")
            for element in elements.partition("{")[2].rpartition("}")[0].split(","):
                if element.strip():
                    cmds.append(["nft", "add", "element", "inet", table, name,
                                 f"{{ {element.strip()} }}"])
    cmds.append(["nft", "add", "chain", "inet", table, "forward",
                  "{ type filter hook forward priority -10; policy accept; }"])
    start = lines.index("chain forward {") + 2
    for rule in lines[start:start + 5]:
        cmds.append(["nft", "add", "rule", "inet", table, "forward", *rule.split()])
    for cmd in cmds:
        subprocess.run(cmd, check=True, capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    print_machine()
    sizes = [int(x) for x in args.sizes.split(",")]
    print(f"{'bridges':>8} {'sync (render+apply)':>20} {'naive (nft per item)':>21} {'ratio':>7}")
    try:
        for n in sizes:
            bridges = _bridges(n, "ocbench")
            naive_bridges = _bridges(n, "ocnaive")
            ours, naive = [], []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                apply(render("ocbench", bridges))
                ours.append(time.perf_counter() - t0)
            for _ in range(max(1, args.runs // 3 if n >= 1000 else args.runs)):
                t0 = time.perf_counter()
                _naive("ocnaive", naive_bridges)
                naive.append(time.perf_counter() - t0)
            mo, mn = median(ours), median(naive)
            print(f"{n:>8} {mo * 1000:>17.1f} ms {mn * 1000:>18.1f} ms {mn / mo:>6.1f}x",
                  flush=True)
    finally:
        apply(render("ocbench", {}))
        apply(render("ocnaive", {}))


if __name__ == "__main__":
    main()
