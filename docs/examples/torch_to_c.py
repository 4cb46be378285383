#!/usr/bin/env python3
"""docs/examples/torch_to_c.py - weights trained in PyTorch, run by the C
program, and back: both directions end to end.

    torch_to_c.py FMNIST_MLP [DATA_DIR]

1. builds in PyTorch the network fmnist_mlp.c builds in C,
       nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)),
   and trains it for a few steps on the test set's first images, so the
   weights are PyTorch's own;
2. saves model.state_dict() as safetensors, exactly as
       safetensors.torch.save_file(model.state_dict(), "mlp.safetensors")
   does (that call when the safetensors package is installed; otherwise
   the same bytes written here: a JSON header, then the raw tensors).  The
   names are PyTorch's ("0.weight", "0.bias", "2.weight", "2.bias") and so
   are the layouts (Linear's weight is [out, in]): the C model has the
   same state_dict, so nothing is renamed or transposed, and no "arch"
   metadata is needed;
3. runs  fmnist_mlp --epochs 0 --load mlp.safetensors --predict pred.csv
   and checks that the C program's logits are PyTorch's (float32, to
   1e-4) and its predicted classes the same.
4. and back: trains the C model for an epoch from those weights
   (--epochs 1 --save c.safetensors --predict c.csv), loads its state_dict
   into the PyTorch model (load_state_dict with strict=False: the file also
   holds the optimiser's state under "optim.") and checks that PyTorch
   computes the C program's logits.

The data are the four IDX files of DATA_DIR (default: Debian's
dataset-fashion-mnist), or when those are not installed a small synthetic
set written to a temporary directory; the normalisation is the program's,
(pixel / 255 - 0.2860) / 0.3530.

Registered in docs/examples/meson.build (suite 'examples'); exits 77
(skipped) when PyTorch is not installed.  Debian's python3-torch goes into
the system interpreter, so when the python3 running this lacks torch (a
virtual environment first on PATH) the script runs itself again with
/usr/bin/python3.
"""
import gzip
import json
import os
import random
import struct
import subprocess
import sys
import tempfile

try:
    import torch
except ImportError:
    if os.path.exists("/usr/bin/python3") and not os.environ.get("TORCH_TO_C_REEXEC"):
        os.environ["TORCH_TO_C_REEXEC"] = "1"
        os.execv("/usr/bin/python3", ["/usr/bin/python3", *sys.argv])
    print("SKIPPED: PyTorch is not installed (apt-get install python3-torch)")
    sys.exit(77)

MEAN, STD = 0.2860, 0.3530
N = 300  # test images used


def save_file(tensors, path):
    """safetensors.torch.save_file, or the same format by hand."""
    try:
        from safetensors.torch import save_file as st_save
        st_save(tensors, path)
        return
    except ImportError:
        pass
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        data = t.detach().contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def load_file(path):
    """safetensors.torch.load_file, or the same by hand (F32, I64, F64)."""
    try:
        from safetensors.torch import load_file as st_load
        return st_load(path)
    except ImportError:
        pass
    types = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64}
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        t = torch.frombuffer(bytearray(data[b:end]), dtype=types[e["dtype"]])
        out[name] = t.reshape(e["shape"]).clone()
    return out


def c_logits(exe, data, args, csv):
    """Runs the C program with --predict csv; its logits as a tensor."""
    p = subprocess.run([exe, "--data", data, "--test-limit", str(N), "--predict", csv,
                        "--quiet", *args], capture_output=True, text=True)
    if p.returncode != 0:
        print(f"FAIL fmnist_mlp {' '.join(args)} exited {p.returncode}: {p.stderr.strip()}")
        return None, None
    rows = [r.split(",") for r in open(csv).read().splitlines()[1:]]
    return torch.tensor([[float(v) for v in r[3:]] for r in rows]), rows


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        _, _, _, nd = struct.unpack(">BBBB", f.read(4))
        dims = struct.unpack(">" + "I" * nd, f.read(4 * nd))
        return dims, f.read()


def write_idx(path, dims, data):
    with open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 0x08, len(dims)))
        f.write(struct.pack(">" + "I" * len(dims), *dims))
        f.write(data)


def synthetic(dst):
    """Class c: noise with a bright bar at rows 2c+4..2c+5."""
    rng = random.Random(2)
    for img, lab in (("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                     ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")):
        labels = bytes(rng.randrange(10) for _ in range(N))
        pixels = bytearray(b & 63 for b in rng.randbytes(N * 784))
        for i, c in enumerate(labels):
            pixels[i * 784 + (2 * c + 4) * 28:][:56] = b"\xc8" * 56
        write_idx(os.path.join(dst, img), (N, 28, 28), bytes(pixels))
        write_idx(os.path.join(dst, lab), (N,), labels)


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: torch_to_c.py FMNIST_MLP [DATA_DIR]")
    exe = sys.argv[1]
    data = sys.argv[2] if len(sys.argv) == 3 else "/usr/share/datasets/fashion-mnist"
    with tempfile.TemporaryDirectory(prefix="torch_to_c.") as tmp:
        test_images = os.path.join(data, "t10k-images-idx3-ubyte.gz")
        if not os.path.exists(test_images):
            data = tmp
            synthetic(tmp)
            test_images = os.path.join(tmp, "t10k-images-idx3-ubyte")
        test_labels = test_images.replace("images-idx3", "labels-idx1")
        _, pix = read_idx(test_images)
        _, lab = read_idx(test_labels)
        x = torch.tensor(list(pix[:N * 784]), dtype=torch.float32).reshape(N, 784)
        x = (x / 255 - MEAN) / STD
        y = torch.tensor(list(lab[:N]), dtype=torch.long)

        # 1. the network, trained a little in PyTorch
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                                    torch.nn.Linear(256, 10))
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        for step in range(20):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
        with torch.no_grad():
            want = model(x)

        # 2. saved as PyTorch users save a state_dict
        path = os.path.join(tmp, "mlp.safetensors")
        save_file(model.state_dict(), path)

        # 3. the C program evaluates it and writes its logits
        got, rows = c_logits(exe, data, ["--epochs", "0", "--load", path],
                             os.path.join(tmp, "pred.csv"))
        if got is None:
            return 1
        diff = (got - want).abs().max().item()
        same_class = sum(int(r[2]) == int(c) for r, c in zip(rows, want.argmax(1)))
        print(f"torch -> C: {len(rows)} images, largest logit difference {diff:.2e}, "
              f"same predicted class for {same_class}")
        ok = len(rows) == N and diff < 1e-4 and same_class == N

        # 4. C -> torch: an epoch of training in C, its checkpoint in PyTorch
        cpath = os.path.join(tmp, "c.safetensors")
        got, rows = c_logits(exe, data, ["--epochs", "1", "--limit", str(N), "--load", path,
                                         "--save", cpath], os.path.join(tmp, "c.csv"))
        if got is None:
            return 1
        missing, unexpected = model.load_state_dict(load_file(cpath), strict=False)
        with torch.no_grad():
            back = model(x)
        diff2 = (got - back).abs().max().item()
        print(f"C -> torch: missing {missing}, {len(unexpected)} optimiser entries ignored, "
              f"largest logit difference {diff2:.2e}")
        ok = ok and not missing and all(u.startswith("optim.") for u in unexpected) \
            and diff2 < 1e-4 and (back - want).abs().max().item() > 1e-3
        print("ok" if ok else "FAIL")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
