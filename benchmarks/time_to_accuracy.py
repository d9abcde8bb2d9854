"""Time to accuracy on ISBI 2012, unetseg's defaults and the peers side by side, one at a time.

Runs ``bench_train.py`` (unetseg, every default) and ``bench_peers.py`` for each peer under the
same budget, one after the other on the same machine, and prints a table with each
contender's test mIoU and unetseg's ratio to the best peer. A peer's score moves by a few
hundredths from run to run (smp scored 0.783 and 0.756 in two runs here), so ``--repeats N``
runs N rounds and also prints the ratio of the means.

The peers need packages that do not belong in unetseg's environment (see bench_peers.py); give
the Python of a venv that has them with ``--peer-python`` (or ``UNETSEG_PEER_PYTHON``). Without
one, or when a peer's package is missing there, the script says so and runs what it can::

    PYTHONPATH=src python benchmarks/time_to_accuracy.py --peer-python /tmp/bench-venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

HERE = Path(__file__).resolve().parent
PEERS = ("smp", "monai", "pytorch-unet")
PEER_MODULES = {"smp": "segmentation_models_pytorch", "monai": "monai", "pytorch-unet": "torch"}


def run_json(command: list[str]) -> dict[str, Any]:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def has_module(python: str, module: str) -> bool:
    probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True, check=False)
    return probe.returncode == 0


class Result(NamedTuple):
    contender: str
    steps: int
    miou: float
    accuracy: float


def one_round(args: argparse.Namespace) -> list[Result]:
    """unetseg, then every available peer, one after the other; unetseg first."""
    ours = run_json(
        [sys.executable, str(HERE / "bench_train.py"), "--max-time", str(args.max_time)]
    )
    results = [
        Result("unetseg (defaults)", ours["steps"], ours["mean_iou"], ours["pixel_accuracy"])
    ]
    for peer in args.peers:
        if not args.peer_python:
            print(f"{peer}: skipped (no --peer-python given)", file=sys.stderr)
            continue
        if not has_module(args.peer_python, PEER_MODULES[peer]):
            print(f"{peer}: skipped ({PEER_MODULES[peer]} not installed there)", file=sys.stderr)
            continue
        peer_run = run_json(
            [args.peer_python, str(HERE / "bench_peers.py"), "--peer", peer,
             "--max-time", str(args.max_time)]
        )  # fmt: skip
        results.append(
            Result(f"{peer} (seed recipe)", peer_run["optimizer_steps"], peer_run["test_miou"],
                   peer_run["pixel_accuracy"])
        )  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-time", type=float, default=300.0)
    parser.add_argument("--peer-python", default=os.environ.get("UNETSEG_PEER_PYTHON"))
    parser.add_argument("--peers", nargs="*", default=list(PEERS), choices=PEERS)
    parser.add_argument(
        "--repeats", type=int, default=1,
        help="rounds of every contender; also prints the ratio of the means",
    )  # fmt: skip
    args = parser.parse_args()

    rounds = [one_round(args) for _ in range(args.repeats)]
    print(f"| round | contender ({args.max_time:.0f} s, {os.cpu_count()} cores) | steps | test mIoU | pixel accuracy |")  # fmt: skip
    print("| --- | --- | --- | --- | --- |")
    for number, results in enumerate(rounds, 1):
        for r in results:
            print(f"| {number} | {r.contender} | {r.steps} | {r.miou:.3f} | {r.accuracy:.3f} |")
    ratios = [res[0].miou / max(r.miou for r in res[1:]) for res in rounds if len(res) > 1]
    if not ratios:
        return
    print("\nunetseg / best peer, per round: " + ", ".join(f"{r:.3f}" for r in ratios))
    if len(rounds) > 1:
        means = {r.contender: sum(res[i].miou for res in rounds) / len(rounds) for i, r in enumerate(rounds[0])}  # fmt: skip
        ours = means.pop(rounds[0][0].contender)
        best = max(means, key=means.__getitem__)
        print(f"mean over rounds: unetseg {ours:.3f}, best peer {best} {means[best]:.3f}, ratio {ours / means[best]:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
