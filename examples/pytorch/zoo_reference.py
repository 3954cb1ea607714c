#!/usr/bin/env python3
"""The PyTorch reference of dync's model zoo: the same networks (package `dynet`), exported by
PyTorch's real exporters, checked against the Rust zoo's exports.

    zoo_reference.py list
        the networks (same names as `dync zoo list`).
    zoo_reference.py export --network NAME [--form mix|train] [--exporter legacy|dynamo]
                            [--batch N|dynamic] [--size HxW] [--mixing M] [--weights RUST.onnx]
                            -o FILE
        exports the PyTorch network (PyTorch's default init, or the weights of a Rust export).
    zoo_reference.py check (--network NAME [options as above] [--dync BIN] | --rust-onnx FILE...)
                           --out DIR [--seed S] [--threads N]
        1. the Rust export: FILE, or `dync zoo export` for the options (binary: --dync, else
           $DYNC_BIN, else <repo>/target/release/dync); its metadata (`dync.zoo.network`,
           `dync.zoo.options`) gives network, form, exporter, batch, size and mixing. Several
           `--rust-onnx` files are checked one after the other (one Python start-up), each in
           DIR/<file stem>/;
        2. the PyTorch network for them, with the Rust file's initializers as its weights
           (dynet/weights.py: by name, through Identity aliases, or by structure);
           `--torch-mixing M` builds it with another mixing op instead: the same function as
           a different chain, which step 4a must reject;
        3. the PyTorch export through the real exporter: legacy =
           `torch.onnx.export(..., dynamo=False, opset_version=17)`, dynamo =
           `torch.onnx.export(..., dynamo=True, opset_version=18)` (the zoo's opsets); a dynamic
           batch is `dynamic_axes` / `dynamic_shapes` on dim 0, traced at batch 2;
        4. (a) op sequences, normalized as dynet/onnxcmp.py defines (static subgraphs, Identity
           and BatchNormalization folded into static Convs dropped): `compute` (without layout
           ops) and every Conv's attributes must be equal; `ops` (with layout ops) equal is
           reported as `exact`, else its differences are listed;
           (b) outputs: onnxruntime on both files and PyTorch eager, the same seeded standard
           normal input (batch 3 for a dynamic batch), |a - b| <= 1e-4 + 1e-3 |rust| everywhere.
        Writes DIR/rust.onnx (when exported here), DIR/torch.onnx, DIR/summary.json, and prints
        the summary as one JSON line on stdout (exporter chatter goes to stderr).

Exit status: 0 every check passes; 1 one fails (op sequences or outputs differ; the summary says
which); 2 bad arguments; 3 an error before the comparison (export, weights, onnxruntime).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

EXIT_MISMATCH, EXIT_USAGE, EXIT_ERROR = 1, 2, 3
ATOL, RTOL = 1e-4, 1e-3
OPSETS = {"legacy": 17, "dynamo": 18}
TRACE_BATCH, DYNAMIC_RUN_BATCH = 2, 3


class Failure(Exception):
    """An error before the comparison (exit 3)."""


def parse_size(s: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {s!r} is not HxW") from None
    if not (1 <= h <= 8192 and 1 <= w <= 8192):
        raise argparse.ArgumentTypeError(f"size {s!r} has a side outside 1..8192")
    return h, w


def parse_batch(s: str) -> int | None:
    if s == "dynamic":
        return None
    try:
        b = int(s)
    except ValueError:
        b = 0
    if not 1 <= b <= 1024:
        raise argparse.ArgumentTypeError(f"batch {s!r} is neither `dynamic` nor in 1..1024")
    return b


def fmt_batch(b: int | None) -> str:
    return "dynamic" if b is None else str(b)


def rust_metadata(proto) -> dict:
    """Network and options of a zoo export, from its metadata."""
    meta = {p.key: p.value for p in proto.metadata_props}
    if "dync.zoo.network" not in meta or "dync.zoo.options" not in meta:
        raise Failure("the Rust ONNX file has no dync.zoo.network / dync.zoo.options metadata")
    opts = dict(kv.split("=", 1) for kv in meta["dync.zoo.options"].split())
    return {
        "network": meta["dync.zoo.network"],
        "form": opts["form"],
        "exporter": opts["exporter"],
        "batch": parse_batch(opts["batch"]),
        "size": parse_size(opts["size"]),
        "mixing": opts["mixing"],
        "seed": int(opts["seed"]),
    }


def dync_binary(arg: str | None) -> Path:
    path = Path(arg or os.environ.get("DYNC_BIN") or HERE.parents[1] / "target/release/dync")
    if not path.is_file():
        raise Failure(f"no dync binary at {path}; build it with `cargo build --release -p dync`")
    return path


def rust_export(args, path: Path) -> None:
    h, w = args.size
    cmd = [
        str(dync_binary(args.dync)), "zoo", "export", args.network, "-o", str(path),
        "--form", args.form, "--exporter", args.exporter, "--batch", fmt_batch(args.batch),
        "--size", f"{h}x{w}",
    ]
    if args.mixing:
        cmd += ["--mixing", args.mixing]
    if args.zoo_seed is not None:
        cmd += ["--seed", str(args.zoo_seed)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise Failure(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")


def torch_export(model, exporter: str, batch: int | None, size, path: Path) -> None:
    """Exports `model` with PyTorch's real exporter; chatter goes to stderr."""
    import torch

    h, w = size
    x = torch.randn(TRACE_BATCH if batch is None else batch, 3, h, w)
    common = dict(input_names=["input"], output_names=["output"], opset_version=OPSETS[exporter])
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "legacy":
            axes = {"input": {0: "batch"}, "output": {0: "batch"}} if batch is None else None
            torch.onnx.export(model, (x,), str(path), dynamo=False, dynamic_axes=axes, **common)
        else:
            shapes = ({0: torch.export.Dim("batch", min=1, max=1024)},) if batch is None else None
            torch.onnx.export(
                model, (x,), str(path), dynamo=True, dynamic_shapes=shapes,
                external_data=False, **common,
            )


def load_weights(model, proto) -> dict:
    from dynet.weights import WeightError, load_onnx_weights

    try:
        return load_onnx_weights(model, proto)
    except WeightError as e:
        raise Failure(f"weights: {e}") from None


def ort_run(path: Path, x, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def closeness(actual, expected) -> dict:
    import numpy as np

    if actual.shape != expected.shape:
        return {"ok": False, "shape": [list(actual.shape), list(expected.shape)]}
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    tol = ATOL + RTOL * np.abs(expected.astype(np.float64))
    finite = bool(np.isfinite(actual).all() and np.isfinite(expected).all())
    return {
        "ok": finite and bool((diff <= tol).all()),
        "max_abs": float(diff.max()) if diff.size else 0.0,
        "worst_ratio": float((diff / tol).max()) if diff.size else 0.0,
        "bad": int((diff > tol).sum()),
    }


def cmd_check(args) -> int:
    import torch

    torch.set_num_threads(args.threads)
    if not args.rust_onnx:
        if not args.network:
            raise Failure("check needs --network or --rust-onnx")
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        rust_path = out / "rust.onnx"
        rust_export(args, rust_path)
        return check_one(args, rust_path, out)
    status = 0
    for f in args.rust_onnx:
        path = Path(f)
        out = Path(args.out) / path.stem
        try:
            code = check_one(args, path, out)
        except Failure as e:
            print(json.dumps({"ok": False, "rust_onnx": str(path), "error": str(e)}))
            print(f"zoo_reference.py: {path}: error: {e}", file=sys.stderr)
            code = EXIT_ERROR
        status = max(status, code)
    return status


def check_one(args, rust_path: Path, out: Path) -> int:
    """Checks one Rust export (see the module docs); prints and writes its summary."""
    import numpy as np
    import onnx
    import torch

    from dynet import onnxcmp, zoo

    out.mkdir(parents=True, exist_ok=True)
    times = {}
    t0 = time.perf_counter()
    rust = onnx.load(str(rust_path))
    meta = rust_metadata(rust)
    times["rust_load"] = time.perf_counter() - t0
    if args.network and args.network != meta["network"]:
        raise Failure(f"--network {args.network} but {rust_path} holds {meta['network']}")

    t = time.perf_counter()
    mixing = args.torch_mixing or meta["mixing"]
    model = zoo.build(meta["network"], meta["form"], mixing)
    routes = load_weights(model, rust)
    torch_path = out / "torch.onnx"
    torch_export(model, meta["exporter"], meta["batch"], meta["size"], torch_path)
    times["torch_export"] = time.perf_counter() - t
    exported = onnx.load(str(torch_path))

    a, b = onnxcmp.normalize(rust), onnxcmp.normalize(exported)
    compute_equal = a["compute"] == b["compute"]
    convs_equal = a["convs"] == b["convs"]
    exact = a["ops"] == b["ops"]

    t = time.perf_counter()
    h, w = meta["size"]
    batch = DYNAMIC_RUN_BATCH if meta["batch"] is None else meta["batch"]
    x = np.random.default_rng(args.seed).standard_normal((batch, 3, h, w)).astype(np.float32)
    try:
        y_rust = ort_run(rust_path, x, args.threads)
        y_torch = ort_run(torch_path, x, args.threads)
    except Exception as e:  # onnxruntime raises its own exception types
        raise Failure(f"onnxruntime: {type(e).__name__}: {e}") from None
    with torch.no_grad():
        y_eager = model(torch.from_numpy(x)).numpy()
    times["run"] = time.perf_counter() - t
    outputs = {
        "torch_onnx_vs_rust_onnx": closeness(y_torch, y_rust),
        "torch_eager_vs_rust_onnx": closeness(y_eager, y_rust),
    }
    ok = compute_equal and convs_equal and all(v["ok"] for v in outputs.values())
    summary = {
        "ok": ok,
        "network": meta["network"],
        "form": meta["form"],
        "exporter": meta["exporter"],
        "batch": fmt_batch(meta["batch"]),
        "size": f"{h}x{w}",
        "mixing": meta["mixing"],
        "torch_mixing": mixing,
        "rust_onnx": str(rust_path),
        "torch_onnx": str(torch_path),
        "torch_version": torch.__version__,
        "weights": routes,
        "compute_equal": compute_equal,
        "convs_equal": convs_equal,
        "exact": exact,
        "ops": {"rust": len(a["ops"]), "torch": len(b["ops"]), "compute": len(a["compute"])},
        "normalized_away": {"rust": a["dropped"], "torch": b["dropped"]},
        "raw_ops": {"rust": a["raw"], "torch": b["raw"]},
        "outputs": outputs,
        "times_s": {k: round(v, 2) for k, v in times.items()},
    }
    if not exact:
        summary["ops_diff"] = onnxcmp.diff(a["ops"], b["ops"])
    if not compute_equal:
        summary["compute_diff"] = onnxcmp.diff(a["compute"], b["compute"])
    if compute_equal and not convs_equal:
        summary["convs_diff"] = [
            {"index": i, "rust": ra, "torch": tb}
            for i, (ra, tb) in enumerate(zip(a["convs"], b["convs"]))
            if ra != tb
        ][:5]
    text = json.dumps(summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(text)
    return 0 if ok else EXIT_MISMATCH


def cmd_export(args) -> int:
    import onnx

    from dynet import zoo

    mixing = args.mixing or zoo.default_mixing(args.network, args.exporter)
    model = zoo.build(args.network, args.form, mixing)
    if args.weights:
        load_weights(model, onnx.load(args.weights))
    torch_export(model, args.exporter, args.batch, args.size, Path(args.output))
    print(args.output)
    return 0


def cmd_list(_args) -> int:
    from dynet import zoo

    for n in zoo.NETWORKS:
        kind = "dynamic" if n.dynamic else "static"
        print(f"{n.name:22} {kind:8} mixing legacy={n.mixing[0]} dynamo={n.mixing[1]}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list")

    def options(sp, network_required: bool):
        sp.add_argument("--network", required=network_required)
        sp.add_argument("--form", choices=["mix", "train"], default="mix")
        sp.add_argument("--exporter", choices=["legacy", "dynamo"], default="legacy")
        sp.add_argument("--batch", type=parse_batch, default=1)
        sp.add_argument("--size", type=parse_size, default=(64, 64))
        sp.add_argument("--mixing", choices=["einsum", "matmul", "mulsum"])

    ex = sub.add_parser("export")
    options(ex, True)
    ex.add_argument("--weights", help="a Rust zoo export whose initializers to load")
    ex.add_argument("-o", "--output", required=True)
    ck = sub.add_parser("check")
    options(ck, False)
    ck.add_argument(
        "--rust-onnx",
        action="append",
        help="a Rust zoo export (its metadata gives the options); repeatable",
    )
    ck.add_argument("--dync", help="the dync binary (default $DYNC_BIN or target/release/dync)")
    ck.add_argument("--zoo-seed", type=int, help="`dync zoo export --seed` (default dync's)")
    ck.add_argument(
        "--torch-mixing",
        choices=["einsum", "matmul", "mulsum"],
        help="build the PyTorch side with this mixing instead of the Rust file's: the same "
        "function written as a different chain, which the op-sequence check must reject",
    )
    ck.add_argument("--seed", type=int, default=0, help="seed of the input")
    ck.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads")
    ck.add_argument("--out", required=True)
    args = p.parse_args(argv)
    try:
        return {"list": cmd_list, "export": cmd_export, "check": cmd_check}[args.cmd](args)
    except (Failure, ValueError) as e:
        print(f"zoo_reference.py: error: {e}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
