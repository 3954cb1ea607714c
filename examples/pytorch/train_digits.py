#!/usr/bin/env python3
"""Train a small dynamic-convolution CNN on scikit-learn's digits, export it for dync.

    train_digits.py --out DIR [--force] [--epochs N]

The data: scikit-learn's `load_digits` (1797 grey 8x8 images, values 0..16, 10 classes), scaled
to [0, 1] and standardised with the training set's mean and standard deviation; a stratified
80/20 split with a fixed seed (1437 training, 360 test images).

The network (`DigitsNet`): a static 3x3 stem (1 -> 24, BatchNorm, ReLU), then three DyNet
blocks, each with its own coefficient predictor (global average pool -> Linear -> sigmoid,
per-output-channel coefficients, g = 6 kernels per output channel) feeding its dynamic convs:
[24 -> 24 3x3, 24 -> 48 3x3 stride 2], [48 -> 48 3x3 grouped (6 per group), 48 -> 48 1x1],
[48 -> 96 3x3 stride 2]; each dynamic conv followed by BatchNorm and ReLU; global average pool and
a Linear classifier. Trained in the `train` form (DyNet Eq. 2: all O*g kernels, weighted sum)
with Adam and a cosine schedule, a fixed seed and one thread, for a fixed number of epochs (about
a minute on one core); then moved into the `mix` form (kernel mixing, batch as groups) and
exported with the legacy exporter (opset 17), the form dync compiles.

Writes into DIR:
    model_b1.onnx        mix form, batch 1
    model_test.onnx      mix form, batch N = the whole test set
    x_test.npy           float32 [N, 1, 8, 8], standardised as the model expects
    y_test.npy           int64 [N], the labels
    logits_torch.npy     float32 [N, 10], PyTorch's (mix form, eval) logits on x_test
    result.json          accuracies (PyTorch train and mix form, onnxruntime on both exports),
                         sizes, timings, versions and the hash of this script and of
                         dynet/dyconv.py
Incremental: when DIR/result.json records the same hash and every file exists, nothing is done
(unless --force). A lock on DIR/.lock serialises concurrent runs.

Exit status: 0 done (or up to date); 1 the exports disagree with PyTorch (onnxruntime accuracy
differs); 2 bad arguments.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SEED = 0
EPOCHS = 15
BATCH = 64
G = 6
FILES = ["model_b1.onnx", "model_test.onnx", "x_test.npy", "y_test.npy", "logits_torch.npy"]


def source_hash() -> str:
    h = hashlib.sha256()
    for p in (Path(__file__).resolve(), HERE / "dynet" / "dyconv.py"):
        h.update(p.read_bytes())
    return h.hexdigest()


def up_to_date(out: Path, digest: str) -> bool:
    try:
        result = json.loads((out / "result.json").read_text())
    except (OSError, ValueError):
        return False
    return result.get("source_sha256") == digest and all((out / f).is_file() for f in FILES)


def make_net(form: str):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    from dynet.dyconv import Coeffs, ConvBN, DyConvBN, Predictor

    class Block(nn.Module):
        """A DyNet block: `route` predicts the coefficients of every conv in `convs`."""

        def __init__(self, cin: int, specs: list[tuple]):
            super().__init__()
            convs, c = [], cin
            for cout, k, stride, groups in specs:
                convs.append(
                    DyConvBN(c, cout, k, stride, groups=groups, act="relu", form=form, g=G)
                )
                c = cout
            self.convs = nn.ModuleList(convs)
            self.route = Predictor(cin, sum(m.width for m in convs))
            self.out_channels = c

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            eta = Coeffs(self.route(x), self.route.total)
            for m in self.convs:
                x = m(x, eta)
            eta.finish()
            return x

    class DigitsNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = ConvBN(1, 24, 3, act="relu")
            self.block1 = Block(24, [(24, 3, 1, 1), (48, 3, 2, 1)])
            self.block2 = Block(48, [(48, 3, 1, 8), (48, 1, 1, 1)])
            self.block3 = Block(48, [(96, 3, 2, 1)])
            self.fc = nn.Linear(96, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.block3(self.block2(self.block1(self.stem(x))))
            return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))

    return DigitsNet()


def accuracy(logits, y) -> float:
    return float((logits.argmax(1) == y).mean())


def ort_logits(path: Path, x):
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    batch = sess.get_inputs()[0].shape[0]
    if batch == x.shape[0]:
        return sess.run(None, {name: x})[0]
    return np.concatenate([sess.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])


def train(out: Path, epochs: int, digest: str) -> int:
    import contextlib
    import warnings

    import numpy as np
    import onnx
    import onnxruntime
    import sklearn
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from dynet.dyconv import load_state_reshaped

    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None]
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=SEED
    )
    mean, std = float(x_tr.mean()), float(x_tr.std())
    x_tr = ((x_tr - mean) / std).astype(np.float32)
    x_te = ((x_te - mean) / std).astype(np.float32)

    net = make_net("train")
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    gen = torch.Generator().manual_seed(SEED)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(xt), BATCH):
            idx = perm[i : i + BATCH]
            loss = F.cross_entropy(net(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        if epoch % 10 == 9 or epoch == epochs - 1:
            print(f"epoch {epoch + 1}: loss {total / len(xt):.4f}", file=sys.stderr)
    train_s = time.perf_counter() - t0

    net.eval()
    mix = make_net("mix").eval()
    load_state_reshaped(mix, {k: v for k, v in net.state_dict().items()
                              if not k.endswith("num_batches_tracked")})
    xe = torch.from_numpy(x_te)
    with torch.no_grad():
        logits_train = net(xe).numpy()
        logits = mix(xe).numpy()

    out.mkdir(parents=True, exist_ok=True)
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, batch in (("model_b1.onnx", 1), ("model_test.onnx", len(x_te))):
            torch.onnx.export(
                mix, (xe[:batch],), str(out / name), dynamo=False, opset_version=17,
                input_names=["input"], output_names=["logits"],
            )
            onnx.checker.check_model(onnx.load(str(out / name)), full_check=True)
    ort_b1 = ort_logits(out / "model_b1.onnx", x_te)
    ort_test = ort_logits(out / "model_test.onnx", x_te)
    np.save(out / "x_test.npy", x_te)
    np.save(out / "y_test.npy", y_te)
    np.save(out / "logits_torch.npy", logits.astype(np.float32))
    result = {
        "source_sha256": digest,
        "seed": SEED,
        "epochs": epochs,
        "train_seconds": round(train_s, 1),
        "n_train": int(len(x_tr)),
        "n_test": int(len(x_te)),
        "g": G,
        "normalization": {"scale": 1 / 16, "mean": mean, "std": std},
        "accuracy": {
            "torch_train_form": accuracy(logits_train, y_te),
            "torch": accuracy(logits, y_te),
            "onnxruntime_b1": accuracy(ort_b1, y_te),
            "onnxruntime_test": accuracy(ort_test, y_te),
        },
        "max_abs_diff": {
            "train_vs_mix": float(np.abs(logits_train - logits).max()),
            "onnxruntime_b1": float(np.abs(ort_b1 - logits).max()),
            "onnxruntime_test": float(np.abs(ort_test - logits).max()),
        },
        "files": FILES,
        "versions": {
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "sklearn": sklearn.__version__,
        },
    }
    (out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    return report(result)


def report(result: dict) -> int:
    """Prints the accuracies; 1 when onnxruntime's differ from PyTorch's."""
    acc = result["accuracy"]
    print(json.dumps(acc))
    return 0 if acc["torch"] == acc["onnxruntime_b1"] == acc["onnxruntime_test"] else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--force", action="store_true", help="retrain even when up to date")
    p.add_argument("--epochs", type=int, default=EPOCHS)
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error("--epochs must be at least 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    digest = source_hash()
    if args.epochs != EPOCHS:
        digest += f"-epochs{args.epochs}"
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not args.force and up_to_date(out, digest):
            return report(json.loads((out / "result.json").read_text()))
        return train(out, args.epochs, digest)


if __name__ == "__main__":
    sys.exit(main())
