#!/usr/bin/env python3
"""Export real CNNs from torchvision/timm to ONNX with onnxruntime reference outputs.

Every entry is one model exported by one exporter at one batch size:

    <out>/<model>-<exporter>-b<N>/model.onnx          self-contained (no external data)
    <out>/<model>-<exporter>-b<N>/inputs/<input>.npy  seeded random input, one per graph input
    <out>/<model>-<exporter>-b<N>/ort/<output>.npy    onnxruntime (CPU) output, one per graph output
    <out>/manifest.json                               all entries, including failed exports

File names are tensor names with characters outside [A-Za-z0-9._-] replaced by `_`.

Weights are random but reproducible: `torch.manual_seed` before building each model, then the
BatchNorm running statistics are calibrated on seeded random batches (train-mode forward passes,
cumulative average), so that the eval-mode BatchNorms are non-trivial affine maps and activations
keep a realistic magnitude through deep networks (a tolerance of atol 1e-4 is then meaningful).

Exporters: `legacy` = TorchScript exporter (`dynamo=False`, opset 17); `dynamo` = the torch.export
based exporter at its default opset. Both use the exporters' default tensor names.

Incremental: an entry is skipped when its files exist and the manifest records the same script
hash (sha256 of this file) and the same torch/onnxruntime versions. A failed export is recorded
in the manifest with its error and is not retried under the same hash unless `--retry-failed`.
A file lock on `<out>/.lock` serialises concurrent runs on the same directory.

Exit status: 0 when every requested entry is exported (or up to date); 4 when some export failed
(each failure is recorded in the manifest and printed; the other entries are valid); 2 on bad
arguments; anything else is a crash of the script itself.
"""

from __future__ import annotations

import argparse
import collections
import fcntl
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

MODELS = [
    "resnet18",
    "resnet50",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "shufflenet_v2_x1_0",
    "efficientnet_cc_b0_4e",
    "efficientnet_cc_b0_8e",
]
QUICK_MODELS = ["resnet18", "mobilenet_v2", "efficientnet_cc_b0_4e"]
TIMM_MODELS = {"efficientnet_cc_b0_4e", "efficientnet_cc_b0_8e"}
EXPORTERS = ["legacy", "dynamo"]
BATCHES = [1, 8]
LEGACY_OPSET = 17
IMAGE_SIZE = 224
SEED = 0
# Calibration of BatchNorm statistics: this many train-mode batches of this size.
CALIB_BATCHES = 2
CALIB_BATCH_SIZE = 8
# Attributes whose distinct values are summarised per op type in the manifest (`op_forms`):
# the ones an importer must branch on. Shape-like attributes of Conv/pools are left out.
NOTABLE_ATTRS = {
    "mode",
    "coordinate_transformation_mode",
    "nearest_mode",
    "cubic_coeff_a",
    "exclude_outside",
    "axes",
    "axis",
    "keepdims",
    "noop_with_empty_axes",
    "transA",
    "transB",
    "alpha",
    "beta",
    "allowzero",
    "perm",
    "to",
    "auto_pad",
    "ceil_mode",
    "count_include_pad",
    "group",
    "dilations",
    "equation",
    "training_mode",
    "num_outputs",
    "start",
    "end",
    "value",
    "approximate",
}
MAX_ATTR_VALUES = 12
# Integer constant inputs up to this many elements have their values listed in `op_forms`.
SMALL_INT_NUMEL = 8
EXIT_EXPORT_FAILED = 4

SCRIPT_PATH = Path(__file__).resolve()


def sanitize(name: str) -> str:
    """Tensor name -> file stem: characters outside [A-Za-z0-9._-] become `_`."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def script_hash() -> str:
    return hashlib.sha256(SCRIPT_PATH.read_bytes()).hexdigest()


def versions() -> dict:
    out = {}
    for pkg in ["torch", "torchvision", "timm", "onnx", "onnxruntime", "onnxscript", "numpy"]:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def entry_name(model: str, exporter: str, batch: int) -> str:
    return f"{model}-{exporter}-b{batch}"


# --------------------------------------------------------------------------------------------
# Model construction


def build_model(name: str):
    import torch

    torch.manual_seed(SEED)
    if name in TIMM_MODELS:
        import timm

        model = timm.create_model(name, pretrained=False)
    else:
        import torchvision

        model = getattr(torchvision.models, name)(weights=None)
    calibrate_batchnorm(model)
    model.eval()
    return model


def calibrate_batchnorm(model) -> None:
    """Replace default BatchNorm statistics (mean 0, var 1) with ones measured on random data.

    The affine parameters are randomised first, so that BatchNorm is not a pure normalisation;
    the statistics are measured after, so that every layer's statistics match its actual input.
    """
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    gen = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for bn in bns:
            if bn.affine:
                bn.weight.uniform_(0.5, 1.5, generator=gen)
                bn.bias.uniform_(-0.2, 0.2, generator=gen)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative moving average over the calibration batches
        model.train()
        for _ in range(CALIB_BATCHES):
            model(torch.randn(CALIB_BATCH_SIZE, 3, IMAGE_SIZE, IMAGE_SIZE, generator=gen))


# --------------------------------------------------------------------------------------------
# Export, check, reference run


def export(model, exporter: str, batch: int, path: Path) -> None:
    import torch

    x = torch.zeros(batch, 3, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        if exporter == "legacy":
            torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=LEGACY_OPSET)
        else:
            # external_data=False: one self-contained file (all these models are far below 2 GB).
            torch.onnx.export(model, (x,), str(path), dynamo=True, external_data=False, verbose=False)
    data = path.with_name(path.name + ".data")
    if data.exists():
        raise RuntimeError(f"exporter wrote external data {data} despite external_data=False")


def describe(path: Path) -> dict:
    """onnx.checker + a summary of the graph for the importer: opsets, op histogram, op forms.

    `op_forms[op]`: `inputs`, the distinct input patterns (one char per input: I initializer,
    A Identity(initializer), C Constant node output, D computed, _ omitted); `attrs`, the distinct
    values of the attributes in NOTABLE_ATTRS; `int_inputs`, per input position, the distinct
    values of small integer constant inputs (axes, shapes, starts/ends). At most MAX_ATTR_VALUES
    values each.
    """
    import onnx

    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    graph = model.graph
    inits = {t.name for t in graph.initializer}
    constants = {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    aliases = {n.output[0] for n in graph.node if n.op_type == "Identity" and n.input[0] in inits}
    # Small integer constants (axes, shapes, starts/ends, ...) by name, to show their values.
    small_ints = {}
    for t in graph.initializer:
        if t.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32) and _numel(t.dims) <= SMALL_INT_NUMEL:
            small_ints[t.name] = onnx.numpy_helper.to_array(t).tolist()
    for n in graph.node:
        if n.op_type == "Constant":
            for attr in n.attribute:
                if attr.name == "value" and attr.t.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32):
                    if _numel(attr.t.dims) <= SMALL_INT_NUMEL:
                        small_ints[n.output[0]] = onnx.numpy_helper.to_array(attr.t).tolist()

    hist = collections.Counter()
    forms: dict[str, dict] = {}
    for node in graph.node:
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        hist[key] += 1
        form = forms.setdefault(
            key,
            {"inputs": set(), "attrs": collections.defaultdict(set), "int_inputs": collections.defaultdict(set)},
        )
        # One char per input: I = initializer, A = Identity(initializer), C = Constant node
        # output, D = computed, _ = omitted optional input.
        pattern = "".join(
            "_" if not i else "I" if i in inits else "A" if i in aliases else "C" if i in constants else "D"
            for i in node.input
        )
        form["inputs"].add(pattern)
        for k, i in enumerate(node.input):
            if i in small_ints:
                form["int_inputs"][str(k)].add(json.dumps(small_ints[i]))
        for attr in node.attribute:
            if attr.name in NOTABLE_ATTRS:
                value = onnx.helper.get_attribute_value(attr)
                if isinstance(value, bytes):
                    value = value.decode("utf-8", "replace")
                elif isinstance(value, onnx.TensorProto):
                    arr = onnx.numpy_helper.to_array(value)
                    value = f"tensor{list(arr.shape)}:{arr.dtype}:{arr.flatten()[:4].tolist()}"
                form["attrs"][attr.name].add(json.dumps(value))

    def io(values):
        out = []
        for v in values:
            t = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim]
            out.append({"name": v.name, "elem_type": onnx.TensorProto.DataType.Name(t.elem_type), "shape": dims})
        return out

    return {
        "ir_version": model.ir_version,
        "opsets": {(o.domain or "ai.onnx"): o.version for o in model.opset_import},
        "inputs": io(graph.input),
        "outputs": io(graph.output),
        "nodes": len(graph.node),
        "initializers": len(graph.initializer),
        "ops": dict(sorted(hist.items())),
        "op_forms": {
            op: {
                "inputs": sorted(f["inputs"]),
                "attrs": {k: sorted(v)[:MAX_ATTR_VALUES] for k, v in sorted(f["attrs"].items())},
                "int_inputs": {k: sorted(v)[:MAX_ATTR_VALUES] for k, v in sorted(f["int_inputs"].items())},
            }
            for op, f in sorted(forms.items())
        },
    }


def _numel(dims) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


def write_npy(path: Path, array) -> None:
    import numpy as np

    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def reference_run(model_path: Path, inputs: list[dict], entry_dir: Path, seed: int) -> tuple[list, list]:
    """Write seeded random inputs and onnxruntime's outputs; return their (name, file) lists."""
    import numpy as np
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    (entry_dir / "inputs").mkdir()
    (entry_dir / "ort").mkdir()
    feeds = {}
    in_files = []
    for inp in inputs:
        if inp["elem_type"] != "FLOAT" or not all(isinstance(d, int) and d > 0 for d in inp["shape"]):
            raise RuntimeError(f"input {inp['name']!r}: expected a static float tensor, got {inp}")
        arr = rng.standard_normal(inp["shape"], dtype=np.float32)
        feeds[inp["name"]] = arr
        rel = f"inputs/{sanitize(inp['name'])}.npy"
        write_npy(entry_dir / rel, arr)
        in_files.append({"name": inp["name"], "file": rel, "shape": list(arr.shape)})

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    results = sess.run(names, feeds)
    out_files = []
    for name, arr in zip(names, results):
        rel = f"ort/{sanitize(name)}.npy"
        write_npy(entry_dir / rel, arr)
        out_files.append({"name": name, "file": rel, "shape": list(arr.shape), "dtype": str(arr.dtype)})
    return in_files, out_files


def make_entry(model_name: str, exporter: str, batch: int, out: Path, model_cache: dict, index: int) -> dict:
    name = entry_name(model_name, exporter, batch)
    final = out / name
    # Build in a scratch directory beside the final one, then rename: a crash never leaves a
    # half-written entry that a later run could mistake for a complete one.
    scratch = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out))
    try:
        if model_name not in model_cache:
            model_cache.clear()  # one model in memory at a time
            model_cache[model_name] = build_model(model_name)
        model_path = scratch / "model.onnx"
        t0 = time.monotonic()
        export(model_cache[model_name], exporter, batch, model_path)
        export_s = time.monotonic() - t0
        info = describe(model_path)
        in_files, out_files = reference_run(model_path, info["inputs"], scratch, SEED + 1000 + index)
        if final.exists():
            shutil.rmtree(final)
        os.replace(scratch, final)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch)
    return {
        "name": name,
        "model": model_name,
        "path": f"{name}/model.onnx",
        "exporter": exporter,
        "batch": batch,
        "inputs": in_files,
        "outputs": out_files,
        "export_seconds": round(export_s, 2),
        **{k: v for k, v in info.items() if k not in ("inputs", "outputs")},
        "graph_inputs": info["inputs"],
        "graph_outputs": info["outputs"],
    }


# --------------------------------------------------------------------------------------------
# Manifest


def load_manifest(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return {e["name"]: e for e in data.get("entries", [])}
    except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError, AttributeError):
        return {}


def save_manifest(path: Path, entries: dict) -> None:
    data = {
        "generator": "examples/pytorch/export_real.py",
        "seed": SEED,
        "image_size": IMAGE_SIZE,
        "legacy_opset": LEGACY_OPSET,
        "entries": [entries[k] for k in sorted(entries)],
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def up_to_date(entry: dict | None, out: Path, current_hash: str, current_versions: dict, retry_failed: bool) -> bool:
    if entry is None or entry.get("script_hash") != current_hash or entry.get("versions") != current_versions:
        return False
    if entry.get("error") is not None:
        return not retry_failed
    files = [entry["path"]] + [f"{entry['name']}/{f['file']}" for f in entry["inputs"] + entry["outputs"]]
    return all((out / f).is_file() for f in files)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=MODELS, help="export only these models")
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK_MODELS)}")
    parser.add_argument("--exporter", nargs="+", choices=EXPORTERS, default=EXPORTERS)
    parser.add_argument("--batch", nargs="+", type=int, default=BATCHES)
    parser.add_argument("--retry-failed", action="store_true", help="retry exports recorded as failed")
    args = parser.parse_args(argv)
    if args.only and args.quick:
        parser.error("--only and --quick are exclusive")
    if any(b < 1 for b in args.batch):
        parser.error("--batch values must be positive")
    models = args.only or (QUICK_MODELS if args.quick else MODELS)

    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    lock = open(out / ".lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)

    manifest_path = out / "manifest.json"
    entries = load_manifest(manifest_path)
    current_hash = script_hash()
    current_versions = versions()
    for stale in out.glob(".*-b*.*"):  # scratch dirs of an interrupted run
        if stale.is_dir():
            shutil.rmtree(stale)

    todo = [(m, e, b) for m in models for e in args.exporter for b in args.batch]
    model_cache: dict = {}
    failures = []
    t_start = time.monotonic()
    for model_name, exporter, batch in todo:
        name = entry_name(model_name, exporter, batch)
        old = entries.get(name)
        if up_to_date(old, out, current_hash, current_versions, args.retry_failed):
            if old.get("error") is not None:
                failures.append((name, old["error"]))
                print(f"[export_real] {name}: recorded failure (use --retry-failed)", flush=True)
            else:
                print(f"[export_real] {name}: up to date", flush=True)
            continue
        # The same input for both exporters, so their outputs are comparable with each other.
        index = MODELS.index(model_name) * 100 + batch
        t0 = time.monotonic()
        try:
            entry = make_entry(model_name, exporter, batch, out, model_cache, index)
            entry["error"] = None
            status = "ok"
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, none dropped
            msg = f"{type(exc).__name__}: {exc}".strip()
            if len(msg) > 4000:
                msg = msg[:4000] + " ..."
            traceback.print_exc()
            entry = {"name": name, "model": model_name, "exporter": exporter, "batch": batch, "error": msg}
            failures.append((name, msg))
            status = "FAILED"
        entry["seconds"] = round(time.monotonic() - t0, 2)
        entry["script_hash"] = current_hash
        entry["versions"] = current_versions
        entries[name] = entry
        save_manifest(manifest_path, entries)
        print(f"[export_real] {name}: {status} ({entry['seconds']:.1f} s)", flush=True)
    save_manifest(manifest_path, entries)
    print(
        f"[export_real] {len(todo)} entries, {len(failures)} failed, {time.monotonic() - t_start:.1f} s, "
        f"manifest {manifest_path}",
        flush=True,
    )
    for name, msg in failures:
        print(f"[export_real] FAILED {name}: {msg.splitlines()[0] if msg else ''}", file=sys.stderr)
    return EXIT_EXPORT_FAILED if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
