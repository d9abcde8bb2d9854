"""Time to accuracy on ISBI 2012, unetseg's defaults and the peers side by side, one at a time.

Runs ``bench_train.py`` (unetseg, every default) and ``bench_peers.py`` for each peer under the
same budget, one after the other on the same machine, and prints a table with each
contender's test mIoU and unetseg's ratio to the best peer.

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

HERE = Path(__file__).resolve().parent
PEERS = ("smp", "monai", "pytorch-unet")
PEER_MODULES = {"smp": "segmentation_models_pytorch", "monai": "monai", "pytorch-unet": "torch"}


def run_json(command: list[str]) -> dict[str, object]:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    result: dict[str, object] = json.loads(lines[-1])
    return result


def has_module(python: str, module: str) -> bool:
    probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True, check=False)
    return probe.returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-time", type=float, default=300.0)
    parser.add_argument("--peer-python", default=os.environ.get("UNETSEG_PEER_PYTHON"))
    parser.add_argument("--peers", nargs="*", default=list(PEERS), choices=PEERS)
    args = parser.parse_args()

    rows = []
    ours = run_json(
        [sys.executable, str(HERE / "bench_train.py"), "--max-time", str(args.max_time)]
    )
    rows.append(("unetseg (defaults)", ours["steps"], ours["mean_iou"], ours["pixel_accuracy"]))
    peer_best = None
    for peer in args.peers:
        if not args.peer_python:
            print(f"{peer}: skipped (no --peer-python given)", file=sys.stderr)
            continue
        if not has_module(args.peer_python, PEER_MODULES[peer]):
            print(f"{peer}: skipped ({PEER_MODULES[peer]} not installed there)", file=sys.stderr)
            continue
        result = run_json(
            [args.peer_python, str(HERE / "bench_peers.py"), "--peer", peer,
             "--max-time", str(args.max_time)]
        )  # fmt: skip
        miou = float(result["test_miou"])  # type: ignore[arg-type]
        peer_best = miou if peer_best is None else max(peer_best, miou)
        rows.append(
            (f"{peer} (seed recipe)", result["optimizer_steps"], miou, result["pixel_accuracy"])
        )

    print(
        f"| contender ({args.max_time:.0f} s, {os.cpu_count()} cores) | steps | test mIoU | pixel accuracy |"
    )
    print("| --- | --- | --- | --- |")
    for name, steps, miou, accuracy in rows:
        print(f"| {name} | {steps} | {float(miou):.3f} | {float(accuracy):.3f} |")  # type: ignore[arg-type]
    if peer_best is not None:
        print(f"\nunetseg / best peer: {float(ours['mean_iou']) / peer_best:.3f}")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
