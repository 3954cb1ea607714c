#!/usr/bin/env python3
"""Write the ONNX backend node tests of the installed `onnx` package as test data folders.

    onnx_node_tests.py --out DIR      writes DIR/node/<test>/{model.onnx, test_data_set_0/*.pb}
                                      and prints DIR/node

The `onnx` wheels on PyPI ship the node-test *definitions* (onnx/backend/test/case/node/*.py:
each builds a one-node model, inputs, and numpy-computed expected outputs) but not the generated
`backend/test/data/node` folders. This script generates those folders with onnx's own writer
(`onnx.backend.test.cmd_tools.generate_data`, which in this onnx version only collects the model
cases, so it is handed the node cases instead), in the layout of the onnx repository: model.onnx
plus `test_data_set_N/input_J.pb` / `output_J.pb` TensorProtos. The suite's tolerances are
rtol 1e-3, atol 1e-7.

The global numpy RNG is seeded first, so the random inputs of the definitions are the same on
every run. Incremental: nothing is written when DIR/node/.complete records the same onnx
version and script hash. A file lock on DIR/.lock serialises concurrent runs.

If the `onnx` package does ship `backend/test/data/node` (older versions did), that folder is
printed instead and nothing is generated.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

SEED = 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    args = parser.parse_args(argv)

    import onnx

    shipped = Path(onnx.__file__).parent / "backend" / "test" / "data" / "node"
    if shipped.is_dir():
        print(shipped)
        return 0

    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    lock = open(out / ".lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)

    node_dir = out / "node"
    stamp = node_dir / ".complete"
    want = {"onnx": onnx.__version__, "script_hash": hashlib.sha256(Path(__file__).read_bytes()).hexdigest()}
    try:
        if json.loads(stamp.read_text()) == want:
            print(node_dir)
            return 0
    except (FileNotFoundError, json.JSONDecodeError):
        pass

    import numpy as np
    import onnx.backend.test.case.model as model_cases
    import onnx.backend.test.case.node as node_cases
    from onnx.backend.test import cmd_tools

    np.random.seed(SEED)
    cases = node_cases.collect_testcases(None)
    if not cases:
        print(f"onnx_node_tests: onnx {onnx.__version__} defines no node test cases", file=sys.stderr)
        return 1

    # Write into a scratch dir, then swap it in: an interrupted run leaves no partial suite.
    scratch = out / ".scratch"
    if scratch.exists():
        shutil.rmtree(scratch)
    model_cases.collect_testcases = lambda: cases
    cmd_tools.generate_data(argparse.Namespace(output=str(scratch)))
    (scratch / "node" / ".complete").write_text(json.dumps(want))
    if node_dir.exists():
        shutil.rmtree(node_dir)
    os.replace(scratch / "node", node_dir)
    shutil.rmtree(scratch)
    print(f"onnx_node_tests: wrote {len(cases)} node tests of onnx {onnx.__version__}", file=sys.stderr)
    print(node_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
