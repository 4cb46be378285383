#!/usr/bin/env python3
"""tests/test_fmnist.py - reduced runs and error paths of the Fashion-MNIST
examples (docs/examples/fmnist_mlp.c, fmnist_cnn.c).

    test_fmnist.py FMNIST_MLP FMNIST_CNN

Registered in docs/examples/meson.build (suite 'examples').  It must stay
fast - the suite also runs under AddressSanitizer in a debug build - so
the programs train on a few hundred or thousand images and evaluate on a
few hundred, read from a small IDX set written to a temporary directory:
the first images of the real data set when it is installed
(/usr/share/datasets/fashion-mnist, Debian's dataset-fashion-mnist), else
a synthetic set (one bright bar per class, easy to learn), so that the
training, checkpoint and error paths are tested either way.  Only the runs
that need the real files (the default --data directory, a cut copy of a
real .gz) are skipped without them, and the test then exits with 77, which
meson reports as skipped.

What is checked:
  - training lowers the loss (first vs last tenth of the batches, from the
    JSON line) and the JSON line parses with the documented keys;
  - the curve CSV (and PNG when gnuplot exists), the confusion matrix;
  - --save then --epochs 0 --load gives the very same test accuracy;
  - --predict writes one CSV row per test image whose predicted class is
    the largest logit and whose accuracy is the reported one;
  - usage errors exit 2, runtime errors exit 1, each with a message naming
    the problem: bad values, missing or truncated data, a checkpoint of the
    other architecture, a state_dict of other shapes.
"""
import gzip
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile

REAL_DIR = "/usr/share/datasets/fashion-mnist"
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
N_TRAIN, N_TEST = 2000, 500

failures = []
skipped = []


def check(cond, what, detail=""):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)
        if detail:
            print("     " + detail.strip().replace("\n", "\n     "))
    return cond


# One thread each: meson runs tests side by side, and threads that spin
# waiting for a busy core only slow everything down.
ENV = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")


def run(exe, *args, timeout=300, env=None):
    p = subprocess.run([exe, *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, env=dict(ENV, **(env or {})))
    return p.returncode, p.stdout, p.stderr


def last_json(stdout):
    lines = stdout.strip().splitlines()
    try:
        return json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        return None


# ---- the small data set ------------------------------------------------------

def write_idx(path, type_code, dims, data):
    with open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, type_code, len(dims)))
        for d in dims:
            f.write(struct.pack(">I", d))
        f.write(data)


def real_available():
    return all(os.path.exists(os.path.join(REAL_DIR, name + ".gz"))
               for pair in FILES.values() for name in pair)


def write_subset(dst):
    """The first images of the real set, as plain IDX files."""
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        img, lab = FILES[split]
        with gzip.open(os.path.join(REAL_DIR, img + ".gz"), "rb") as f:
            f.read(16)  # magic and three extents
            pixels = f.read(n * 784)
        with gzip.open(os.path.join(REAL_DIR, lab + ".gz"), "rb") as f:
            f.read(8)
            labels = f.read(n)
        write_idx(os.path.join(dst, img), 0x08, (n, 28, 28), pixels)
        write_idx(os.path.join(dst, lab), 0x08, (n,), labels)


def write_synthetic(dst):
    """Class c is dim noise with a bright horizontal bar at rows 2c+4..2c+5."""
    rng = random.Random(1)
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        img, lab = FILES[split]
        labels = bytes(rng.randrange(10) for _ in range(n))
        pixels = bytearray(b & 63 for b in rng.randbytes(n * 784))
        for i, c in enumerate(labels):
            row = i * 784 + (2 * c + 4) * 28
            pixels[row:row + 56] = b"\xc8" * 56
        write_idx(os.path.join(dst, img), 0x08, (n, 28, 28), bytes(pixels))
        write_idx(os.path.join(dst, lab), 0x08, (n,), labels)


# ---- the checks --------------------------------------------------------------

def isnum(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_training(name, exe, data, tmp, args, label):
    """A reduced run: exit 0, JSON line, falling loss.  Returns the JSON."""
    rc, out, err = run(exe, "--data", data, "--json", *args)
    if not check(rc == 0, f"{name} {label}: exits 0", err):
        return None
    js = last_json(out)
    if not check(js is not None, f"{name} {label}: last line is one JSON object",
                 out[-500:]):
        return None
    keys = ["test_accuracy", "train_samples_per_s", "epochs", "wall_s", "final_loss", "serial_steps",
            "first_loss", "last_loss"]
    check(all(k in js for k in keys), f"{name} {label}: JSON has {', '.join(keys)}",
          str(js))
    first, last = js.get("first_loss"), js.get("last_loss")
    check(isnum(first) and isnum(last) and last < first,
          f"{name} {label}: the loss falls (first tenth {first}, last tenth {last})")
    acc = js.get("test_accuracy")
    check(isnum(acc) and acc > 0.3,
          f"{name} {label}: test accuracy {acc} is well above chance (0.1)")
    return js, out


def check_error(name, exe, args, want_rc, words, label):
    rc, out, err = run(exe, *args)
    msg = err.strip().splitlines()[-1] if err.strip() else ""
    ok = rc == want_rc and all(w.lower() in err.lower() for w in words)
    check(ok, f"{name} {label}: exit {want_rc} naming {words}",
          f"exit {rc}, stderr: {err.strip()[-600:]}")
    check("epoch 1/" not in out, f"{name} {label}: nothing trained")
    return msg


def write_safetensors(path, metadata=None):
    """One float32 tensor "0.weight" of shape [1], with that metadata."""
    entries = {"0.weight": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
    if metadata:
        entries = {"__metadata__": metadata, **entries}
    header = json.dumps(entries).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + struct.pack("<f", 1.0))


def check_predictions(mlp, small, ck, tmp, accuracy):
    """--predict: a header, one row per test image in order, the predicted
    class the largest logit, and the accuracy counted from the rows the
    one the program reports."""
    pred = os.path.join(tmp, "pred.csv")
    rc, out, err = run(mlp, "--data", small, "--epochs", 0, "--load", ck, "--test-limit", 300,
                       "--predict", pred, "--quiet")
    if not check(rc == 0 and os.path.exists(pred), "mlp: --predict exits 0 and writes", err):
        return
    rows = open(pred).read().splitlines()
    header = rows[0].split(",")
    check(header == ["index", "label", "predicted"] + [f"logit_{c}" for c in range(10)],
          "mlp: --predict header is index,label,predicted,logit_0..logit_9", rows[0])
    body = [r.split(",") for r in rows[1:]]
    check(len(body) == 300 and [int(r[0]) for r in body] == list(range(300)),
          f"mlp: --predict writes one row per test image, in order ({len(body)} rows)")
    argmax_ok = all(int(r[2]) == max(range(10), key=lambda c: float(r[3 + c])) for r in body)
    check(argmax_ok, "mlp: --predict's predicted class is the largest logit")
    correct = sum(int(r[1]) == int(r[2]) for r in body)
    check(abs(correct / 300 - accuracy) < 1e-5,  # the JSON has 6 digits
          f"mlp: accuracy from the --predict rows ({correct}/300) is the reported {accuracy}")


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: test_fmnist.py FMNIST_MLP FMNIST_CNN")
    mlp, cnn = sys.argv[1], sys.argv[2]
    # TEST_FMNIST_SYNTHETIC=1 takes the path of a machine without the
    # data set, to test the test.
    real = real_available() and not os.environ.get("TEST_FMNIST_SYNTHETIC")
    with tempfile.TemporaryDirectory(prefix="test_fmnist.") as tmp:
        small = os.path.join(tmp, "small")
        os.mkdir(small)
        if real:
            write_subset(small)
            print(f"data: the first {N_TRAIN}/{N_TEST} images of {REAL_DIR}")
        else:
            write_synthetic(small)
            print(f"data: synthetic ({REAL_DIR} not installed, or TEST_FMNIST_SYNTHETIC set)")

        # -- MLP: train, curve, save; then evaluate the saved model --------
        mlp_ck = os.path.join(tmp, "mlp.safetensors")
        csv = os.path.join(tmp, "mlp_curve.csv")
        got = check_training("mlp", mlp, small, tmp,
                             ["--limit", 2000, "--epochs", 1, "--test-limit", 300,
                              "--save", mlp_ck, "--curve", csv], "2000 images, 1 epoch")
        if got:
            js, out = got
            check("Ankle boot" in out and "T-shirt/top" in out,
                  "mlp: prints the confusion matrix with the class names")
            # 32 batches, the last of 16: the steady figures count steps 6
            # to 31, neither the warm-up nor the short last batch (whose
            # first step records a tape of its own shape)
            check(js.get("steady_steps") == 26,
                  "mlp: the steady figures leave out the warm-up and the epoch's last step",
                  str(js.get("steady_steps")))
            rows = open(csv).read().splitlines() if os.path.exists(csv) else []
            check(len(rows) == 2 and rows[0].startswith("epoch,"),
                  "mlp: --curve writes a header and one row per epoch", "\n".join(rows))
            if shutil.which("gnuplot"):
                png = csv[:-4] + ".png"
                check(os.path.exists(png) and os.path.getsize(png) > 1000,
                      "mlp: --curve draws the PNG with gnuplot")
            rc, out, err = run(mlp, "--data", small, "--epochs", 0, "--load", mlp_ck,
                               "--test-limit", 300, "--json", "--quiet")
            js2 = last_json(out)
            check(rc == 0 and js2 is not None and js2["test_accuracy"] == js["test_accuracy"]
                  and js2["test_loss"] == js["test_loss"],
                  "mlp: --epochs 0 --load gives the saved model's accuracy and loss",
                  f"exit {rc}: {err} {out[-300:]}")
            check_predictions(mlp, small, mlp_ck, tmp, js["test_accuracy"])

        # -- --checkpoint after every epoch, then --resume from it ----------
        # (that a resumed run is the uninterrupted one bit for bit is
        # test_trainer's checkpoint_resume_is_exact; here: the options)
        ck = os.path.join(tmp, "ck.safetensors")
        common = ["--data", small, "--limit", 640, "--test-limit", 100, "--quiet", "--json"]
        rc1, out1, err1 = run(mlp, *common, "--epochs", 2, "--checkpoint", ck)
        rc2, out2, err2 = run(mlp, *common, "--epochs", 2, "--resume", ck)
        rc3, out3, err3 = run(mlp, *common, "--epochs", 3, "--resume", ck)
        js1, js2, js3 = last_json(out1), last_json(out2), last_json(out3)
        check(rc1 == 0 and rc2 == 0 and js1 and js2 and js2["train_samples_per_s"] is None
              and js2["test_accuracy"] == js1["test_accuracy"],
              "mlp: --resume of a finished run trains nothing and gives its accuracy",
              f"exit {rc1} {rc2}: {err1} {err2} {out2[-300:]}")
        check(rc3 == 0 and js3 and js3["train_samples_per_s"] is not None
              and js3["final_loss"] < js1["first_loss"],
              "mlp: --resume with one more epoch trains that epoch",
              f"exit {rc3}: {err3} {out3[-300:]}")
        check_error("mlp", mlp, ["--data", small, "--load", ck, "--resume", ck], 2,
                    ["--load and --resume"], "--load with --resume")

        # -- --threads auto (the default): one per core, OMP_NUM_THREADS's
        # count when set, at most 8; the MLP's products split ("ops") give
        # one thread's bits
        common = ["--data", small, "--limit", 640, "--test-limit", 100, "--epochs", 1,
                  "--quiet", "--json"]
        runs = {}
        for label, args, env in (("default, OMP_NUM_THREADS=2", [], {"OMP_NUM_THREADS": "2"}),
                                 ("auto, OMP_NUM_THREADS=2", ["--threads", "auto"],
                                  {"OMP_NUM_THREADS": "2"}),
                                 ("default, OMP_NUM_THREADS=1", [], {}),
                                 ("default, OMP_NUM_THREADS=64", [], {"OMP_NUM_THREADS": "64"}),
                                 ("--threads 0, OMP_NUM_THREADS=2", ["--threads", 0],
                                  {"OMP_NUM_THREADS": "2"}),
                                 ("--threads 1", ["--threads", 1], {})):
            rc, out, err = run(mlp, *common, *args, env=env)
            runs[label] = last_json(out) if rc == 0 else None
            check(runs[label] is not None, f"mlp {label}: exits 0 with JSON", err)
        want = {"default, OMP_NUM_THREADS=2": (2, "ops"), "auto, OMP_NUM_THREADS=2": (2, "ops"),
                "default, OMP_NUM_THREADS=1": (1, "none"),
                "default, OMP_NUM_THREADS=64": (8, "ops"), "--threads 1": (1, "none")}
        for label, (n, mode) in want.items():
            js = runs[label] or {}
            check((js.get("threads"), js.get("thread_mode")) == (n, mode),
                  f"mlp {label}: {n} training thread(s), thread_mode {mode}",
                  f"threads {js.get('threads')}, thread_mode {js.get('thread_mode')}")
        js = runs["--threads 0, OMP_NUM_THREADS=2"] or {}
        check(js.get("thread_mode") == "none",
              "mlp --threads 0: one training thread (the kernels on OpenMP's threads)", str(js))
        one = runs["--threads 1"] or {}
        for label in want:
            js = runs[label] or {}
            check(js and one and (js.get("test_loss"), js.get("final_loss")) ==
                  (one.get("test_loss"), one.get("final_loss")),
                  f"mlp {label}: the bits of --threads 1 (test and final loss)",
                  f"{js.get('test_loss')} {js.get('final_loss')} against "
                  f"{one.get('test_loss')} {one.get('final_loss')}")

        # -- CNN: a few steps, save, reload --------------------------------
        cnn_ck = os.path.join(tmp, "cnn.safetensors")
        got = check_training("cnn", cnn, small, tmp,
                             ["--limit", 128, "--batch", 8, "--lr", 0.05, "--epochs", 1,
                              "--test-limit", 100, "--quiet", "--save", cnn_ck],
                             "128 images, 1 epoch")
        if got:
            js, _ = got
            rc, out, err = run(cnn, "--data", small, "--epochs", 0, "--load", cnn_ck,
                               "--test-limit", 100, "--json", "--quiet")
            js2 = last_json(out)
            check(rc == 0 and js2 is not None and js2["test_accuracy"] == js["test_accuracy"],
                  "cnn: --epochs 0 --load gives the saved model's accuracy",
                  f"exit {rc}: {err} {out[-300:]}")

        # -- usage errors: exit 2, before any data is read ------------------
        for exe, name in ((mlp, "mlp"), (cnn, "cnn")):
            for args, words in ((["--epochs", "-1"], ["--epochs", "-1"]),
                                (["--batch", "0"], ["--batch", "0"]),
                                (["--lr", "nan"], ["--lr", "nan"]),
                                (["--lr", "-0.1"], ["--lr", "-0.1"]),
                                (["--lr", "inf"], ["--lr", "inf"]),
                                (["--lr", "0.1x"], ["--lr", "0.1x"]),
                                (["--momentum", "1"], ["--momentum"]),
                                (["--threads", "x"], ["--threads", "auto or an integer", "'x'"]),
                                (["--threads", "-1"], ["--threads", "'-1'"]),
                                (["--threads", "257"], ["--threads", "0 to 256", "'257'"]),
                                (["--epochs"], ["--epochs", "needs a value"]),
                                (["--frobnicate"], ["unknown option", "--frobnicate"])):
                check_error(name, exe, args, 2, words, " ".join(args))
        check_error("mlp", mlp, ["--data", small, "--limit", N_TRAIN + 1], 2,
                    ["--limit", str(N_TRAIN + 1), str(N_TRAIN)], "--limit beyond the data")

        # -- runtime errors: exit 1 -----------------------------------------
        check_error("mlp", mlp, ["--data", "/nonexistent", "--epochs", 1], 1,
                    ["/nonexistent", "train-images-idx3-ubyte"], "--data /nonexistent")

        # a plain IDX file cut in the middle of its pixels
        cut = os.path.join(tmp, "cut")
        shutil.copytree(small, cut)
        path = os.path.join(cut, FILES["train"][0])
        with open(path, "r+b") as f:
            f.truncate(16 + 784 * 100 + 5)
        check_error("mlp", mlp, ["--data", cut, "--epochs", 1], 1,
                    ["truncated", FILES["train"][0]], "truncated IDX file")
        # a gzip stream cut short (the plain file is taken first, so remove it)
        cutgz = os.path.join(tmp, "cutgz")
        shutil.copytree(small, cutgz)
        path = os.path.join(cutgz, FILES["train"][0])
        with open(path, "rb") as f:
            data = gzip.compress(f.read())
        os.remove(path)
        with open(path + ".gz", "wb") as f:
            f.write(data[:len(data) // 2])
        check_error("cnn", cnn, ["--data", cutgz, "--epochs", 1], 1,
                    [FILES["train"][0]], "gzip file cut short")
        # labels that disagree with the images in count
        short = os.path.join(tmp, "short")
        shutil.copytree(small, short)
        write_idx(os.path.join(short, FILES["test"][1]), 0x08, (3,), b"\x00\x01\x02")
        check_error("mlp", mlp, ["--data", short, "--epochs", 1], 1,
                    ["labels"], "image and label counts differ")

        if os.path.exists(mlp_ck) and os.path.exists(cnn_ck):
            check_error("mlp", mlp, ["--data", small, "--epochs", 0, "--load", cnn_ck], 1,
                        ["fmnist_cnn", "wrong architecture"], "--load a CNN checkpoint")
            check_error("cnn", cnn, ["--data", small, "--epochs", 0, "--load", mlp_ck], 1,
                        ["fmnist_mlp", "wrong architecture"], "--load an MLP checkpoint")
            check_error("mlp", mlp, ["--data", small, "--epochs", 2, "--resume", cnn_ck], 1,
                        ["fmnist_cnn", "wrong architecture"], "--resume a CNN checkpoint")
        check_error("mlp", mlp, ["--data", small, "--epochs", 1,
                                 "--save", "/nonexistent/model.safetensors"], 1,
                    ["/nonexistent"], "--save into a missing directory (refused up front)")
        bare = os.path.join(tmp, "bare.safetensors")
        write_safetensors(bare)
        # without "arch" (a plain state_dict, as PyTorch's save_file writes)
        # the file is loaded as this architecture, and the strict load says
        # what does not fit: here the shape of 0.weight
        check_error("mlp", mlp, ["--data", small, "--epochs", 0, "--load", bare], 1,
                    ["bare.safetensors", "'0.weight' has shape [1] in the file, the tensor is "
                     "[256,784]"], "--load a state_dict without metadata, of other shapes")
        # the right "arch" but tensors of other shapes: the strict load
        # checks each one and refuses
        forged = os.path.join(tmp, "forged.safetensors")
        write_safetensors(forged, {"arch": "fmnist_mlp"})
        check_error("mlp", mlp, ["--data", small, "--epochs", 0, "--load", forged], 1,
                    ["forged.safetensors", "0.weight"], "--load tensors of the wrong shape")
        # a state_dict saved from a wrapper module: its names' prefix is
        # pointed out
        wrapped = os.path.join(tmp, "wrapped.safetensors")
        with open(wrapped, "wb") as f:
            header = json.dumps({"model.0.weight": {"dtype": "F32", "shape": [1],
                                                    "data_offsets": [0, 4]}}).encode()
            header += b" " * (-len(header) % 8)
            f.write(struct.pack("<Q", len(header)) + header + struct.pack("<f", 1.0))
        check_error("mlp", mlp, ["--data", small, "--epochs", 0, "--load", wrapped], 1,
                    ["'model.0.weight'", "prefix 'model.'"], "--load names with a prefix")
        junk = os.path.join(tmp, "junk.safetensors")
        with open(junk, "wb") as f:
            f.write(b"this is not a checkpoint")
        check_error("mlp", mlp, ["--data", small, "--epochs", 0, "--load", junk], 1,
                    ["junk.safetensors"], "--load a file that is not safetensors")
        check_error("mlp", mlp, ["--data", small, "--epochs", 0, "--load",
                                 os.path.join(tmp, "missing.safetensors")], 1,
                    ["missing.safetensors"], "--load a missing file")

        # -- the parts that need the real data set --------------------------
        if real:
            rc, out, err = run(mlp, "--epochs", 0, "--test-limit", 200, "--json", "--quiet")
            js = last_json(out)
            check(rc == 0 and js and js["test_samples"] == 200 and js["train_samples"] == 60000,
                  f"mlp: reads the default directory {REAL_DIR}", err)
            # the real training images, gzip stream cut after 1 MB
            realcut = os.path.join(tmp, "realcut")
            os.mkdir(realcut)
            for pair in FILES.values():
                for name in pair:
                    shutil.copy(os.path.join(REAL_DIR, name + ".gz"), realcut)
            path = os.path.join(realcut, FILES["train"][0] + ".gz")
            with open(path, "r+b") as f:
                f.truncate(1 << 20)
            check_error("mlp", mlp, ["--data", realcut, "--epochs", 1], 1,
                        [FILES["train"][0]], "real .gz cut short")
        else:
            skipped.append(f"the default --data directory and a cut copy of the real "
                           f"files ({REAL_DIR} is not installed: apt-get install "
                           f"dataset-fashion-mnist)")

    print()
    if failures:
        print(f"{len(failures)} check(s) failed:")
        for f in failures:
            print("  " + f)
        return 1
    if skipped:
        print("SKIPPED: " + "; ".join(skipped))
        return 77
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
