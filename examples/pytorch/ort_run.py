#!/usr/bin/env python3
"""Run an ONNX model in onnxruntime (CPUExecutionProvider): the reference dync is compared with.

    ort_run.py MODEL --input NAME=FILE.npy ... --output-dir DIR [--threads N]
        writes DIR/<output>.npy for every graph output; names are sanitised: characters outside
        [A-Za-z0-9._-] become `_` (the same rule as `dync run`). With --json, prints one JSON line
        {"outputs": [{"name", "file", "shape", "dtype"}, ...], "ort_version"} (graph output order).
    ort_run.py MODEL --input NAME=FILE.npy ... --bench [--iters N] [--warmup W] [--json]
        times session.run; with --json prints one JSON line with median_ms, p90_ms, min_ms,
        threads, ort_version (and iters, warmup, model).
    ort_run.py MODEL --input NAME=FILE.npy ... --serve [--warmup W]
        after the warm-up runs prints one JSON line {"ready": true, "threads", "ort_version"},
        then for every line N read from stdin (a run count >= 1) times N runs of session.run
        and prints {"times_ms": [...]}; exits at the end of stdin. `dync bench` interleaves
        these blocks with its own engines' runs.

Every graph input must be given, and no unknown name. `--threads` defaults to the number of CPUs;
`--threads 0` lets onnxruntime choose (reported as 0).

Exit status: 0 success; 1 the model fails to load or run; 2 bad arguments or inputs; 3 onnxruntime
(or numpy) is not importable.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import statistics
from pathlib import Path
from typing import NoReturn

EXIT_RUN = 1
EXIT_USAGE = 2
EXIT_NO_ORT = 3


def sanitize(name: str) -> str:
    """Tensor name -> file stem: characters outside [A-Za-z0-9._-] become `_`."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def fail(code: int, msg: str) -> NoReturn:
    print(f"ort_run: error: {msg}", file=sys.stderr)
    sys.exit(code)


def parse_inputs(specs: list[str]) -> dict[str, Path]:
    inputs: dict[str, Path] = {}
    for spec in specs:
        name, sep, file = spec.partition("=")
        if not sep or not name or not file:
            fail(EXIT_USAGE, f"--input {spec!r}: expected NAME=FILE.npy")
        if name in inputs:
            fail(EXIT_USAGE, f"--input {name!r} given twice")
        inputs[name] = Path(file)
    return inputs


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty list."""
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy")
    parser.add_argument("--output-dir", type=Path)
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="intra-op threads (default: CPUs; 0: onnxruntime's choice)"
    )
    parser.add_argument("--bench", action="store_true")
    parser.add_argument("--serve", action="store_true", help="time blocks of runs on request (stdin)")
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON line (outputs, or timings with --bench)")
    args = parser.parse_args(argv)
    if args.serve and (args.bench or args.output_dir is not None):
        parser.error("--serve takes neither --bench nor --output-dir")
    if not (args.bench or args.serve) and args.output_dir is None:
        parser.error("--output-dir is required unless --bench or --serve")
    if args.threads < 0 or args.iters < 1 or args.warmup < 0:
        parser.error("--threads and --warmup must be >= 0, --iters >= 1")

    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError as exc:
        fail(
            EXIT_NO_ORT,
            f"cannot import onnxruntime/numpy ({exc}); run scripts/setup-venv and use "
            "${DYNC_VENV:-$HOME/.cache/dync/venv}/bin/python",
        )

    specs = parse_inputs(args.input)
    if not args.model.is_file():
        fail(EXIT_USAGE, f"{args.model}: no such model file")

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    try:
        sess = ort.InferenceSession(str(args.model), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types
        fail(EXIT_RUN, f"{args.model}: onnxruntime cannot load the model: {exc}")

    graph_inputs = {i.name for i in sess.get_inputs()}
    unknown = sorted(set(specs) - graph_inputs)
    missing = sorted(graph_inputs - set(specs))
    if unknown or missing:
        fail(EXIT_USAGE, f"{args.model}: inputs unknown {unknown}, missing {missing} (graph inputs {sorted(graph_inputs)})")
    feeds = {}
    for name, file in specs.items():
        try:
            feeds[name] = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as exc:
            fail(EXIT_USAGE, f"--input {name}={file}: cannot read .npy: {exc}")

    names = [o.name for o in sess.get_outputs()]
    try:
        results = sess.run(names, feeds)
    except Exception as exc:  # noqa: BLE001
        fail(EXIT_RUN, f"{args.model}: onnxruntime failed to run: {exc}")

    if args.output_dir is not None:
        args.output_dir.mkdir(parents=True, exist_ok=True)
        files = [sanitize(n) for n in names]
        if len(set(files)) != len(files):
            fail(EXIT_RUN, f"{args.model}: output names {names} collide after sanitising")
        written = []
        for name, file, arr in zip(names, files, results):
            path = args.output_dir / f"{file}.npy"
            tmp = path.with_name(path.name + ".tmp")
            with open(tmp, "wb") as f:
                np.save(f, arr)
            os.replace(tmp, path)
            written.append({"name": name, "file": str(path), "shape": list(arr.shape), "dtype": str(arr.dtype)})
        if args.json and not args.bench:
            print(json.dumps({"outputs": written, "ort_version": ort.__version__}), flush=True)

    def timed_runs(count: int) -> list[float]:
        """The milliseconds of `count` runs of the session on the inputs."""
        times = []
        for _ in range(count):
            t0 = time.perf_counter()
            sess.run(names, feeds)
            times.append((time.perf_counter() - t0) * 1e3)
        return times

    if args.serve or args.bench:
        timed_runs(args.warmup)

    if args.serve:
        print(json.dumps({"ready": True, "threads": args.threads, "ort_version": ort.__version__}), flush=True)
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                count = int(line)
            except ValueError:
                count = 0
            if count < 1:
                fail(EXIT_USAGE, f"--serve: expected a run count >= 1 on stdin, got {line!r}")
            print(json.dumps({"times_ms": timed_runs(count)}), flush=True)
        return 0

    if args.bench:
        times = sorted(timed_runs(args.iters))
        report = {
            "model": str(args.model),
            "median_ms": statistics.median(times),
            "p90_ms": percentile(times, 90),
            "min_ms": times[0],
            "iters": args.iters,
            "warmup": args.warmup,
            "threads": args.threads,
            "ort_version": ort.__version__,
        }
        if args.json:
            print(json.dumps(report), flush=True)
        else:
            print(
                f"{args.model}: median {report['median_ms']:.3f} ms, p90 {report['p90_ms']:.3f} ms, "
                f"min {report['min_ms']:.3f} ms ({args.iters} iters, {report['threads']} threads, "
                f"onnxruntime {report['ort_version']})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
