"""Writes the ONNX backend node tests of the installed `onnx` package as test folders.

The onnx wheels on PyPI ship the node-test generators (onnx/backend/test/case/node/*.py) but not
their generated data (onnx/backend/test/data/node). This script runs those generators exactly as
onnx's own `cmd_tools generate-data` does for model tests, writing

    OUT/<test name>/model.onnx
    OUT/<test name>/test_data_set_<k>/{input,output}_<j>.pb

with the expected outputs computed by onnx's reference code. Only tensor-typed inputs and outputs
are written (sequence/map/optional cases are skipped: dync has no such types).

usage: python generate.py OUT
"""

import os
import shutil
import sys

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper
from onnx.backend.test.case import node as node_cases


def tensor_bytes(value, name):
    if isinstance(value, TensorProto):
        return value.SerializeToString()
    return numpy_helper.from_array(np.asarray(value), name).SerializeToString()


def main():
    out = sys.argv[1]
    tmp = out + ".tmp"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    written = 0
    for case in node_cases.collect_testcases(None):
        graph = case.model.graph
        if not all(v.type.HasField("tensor_type") for v in list(graph.input) + list(graph.output)):
            continue
        d = os.path.join(tmp, case.name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "model.onnx"), "wb") as f:
            f.write(case.model.SerializeToString())
        for i, (inputs, outputs) in enumerate(case.data_sets):
            ds = os.path.join(d, f"test_data_set_{i}")
            os.makedirs(ds)
            for j, value in enumerate(inputs):
                with open(os.path.join(ds, f"input_{j}.pb"), "wb") as f:
                    f.write(tensor_bytes(value, graph.input[j].name))
            for j, value in enumerate(outputs):
                with open(os.path.join(ds, f"output_{j}.pb"), "wb") as f:
                    f.write(tensor_bytes(value, graph.output[j].name))
        written += 1
    with open(os.path.join(tmp, "VERSION"), "w") as f:
        f.write(onnx.__version__ + "\n")
    if os.path.exists(out):
        shutil.rmtree(out)
    os.rename(tmp, out)
    print(f"wrote {written} node tests of onnx {onnx.__version__} to {out}")


if __name__ == "__main__":
    main()
