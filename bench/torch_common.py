"""bench/torch_common.py - what bench/torch_mlp.py and bench/torch_cnn.py share.

Thread counts have to be pinned before torch is imported (its OpenMP and
BLAS pools read the environment when they start), so each script calls
pin_threads() first and imports torch afterwards.  Each prints one JSON line:
samples/s over the timed steps, their minor page faults per step
(getrusage), peak RSS, and the time from process start
to the end of the first training step (interpreter start, torch import,
data loading and the first step's one-off work).
"""
import argparse
import gzip
import json
import os
import resource
import struct
import sys
import time


def process_start_time():
    """Wall-clock time the process started: bench/run passes its launch
    time in BENCH_LAUNCH_TIME; otherwise /proc/self/stat's start time
    (clock ticks after boot) against /proc/uptime."""
    t = os.environ.get("BENCH_LAUNCH_TIME")
    if t:
        return float(t)
    with open("/proc/self/stat") as f:
        start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return time.time() - uptime + start_ticks / os.sysconf("SC_CLK_TCK")


def clock():
    """bench/common.h's clock: BENCH_CLOCK=wall, or process CPU time (the
    default), which on a shared machine leaves out time spent waiting for a
    core.  With one thread the two agree on an idle machine; with more,
    CPU time adds the threads up, so bench/run asks for wall time then."""
    if os.environ.get("BENCH_CLOCK") == "wall":
        return time.perf_counter()
    return time.process_time()


def parse_args(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=200, help="timed training steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--data", default=os.environ.get(
        "FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"),
        help="Fashion-MNIST IDX directory (Debian's dataset-fashion-mnist "
             "installs it here); random data of the same shape when absent")
    p.add_argument("--random-data", action="store_true",
                   help="use random data even when Fashion-MNIST is present")
    return p.parse_args()


def pin_threads(n):
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def _idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xff
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return shape, data[4 + 4 * ndim:]


def load_data(torch, args, n_random=6400):
    """(images [N,1,28,28] float32 in [0,1], labels [N] int64, source)."""
    base = args.data
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
    paths = []
    for name in names:
        for cand in (os.path.join(base, name + ".gz"), os.path.join(base, name)):
            if os.path.exists(cand):
                paths.append(cand)
                break
    if not args.random_data and len(paths) == 2:
        (n, h, w), pix = _idx(paths[0])
        _, lab = _idx(paths[1])
        x = torch.frombuffer(bytearray(pix), dtype=torch.uint8).reshape(n, 1, h, w)
        y = torch.frombuffer(bytearray(lab), dtype=torch.uint8).to(torch.int64)
        return x.to(torch.float32).div_(255.0), y, "fashion-mnist"
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n_random, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (n_random,), generator=g)
    return x, y, "random"


def train(torch, model, args, flatten, name):
    """SGD (lr 0.01, momentum 0.9) with cross-entropy, batch args.batch,
    cycling through the data; prints the JSON line."""
    t_start = process_start_time()
    x, y, source = load_data(torch, args)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    n = x.shape[0]
    b = args.batch
    first_step = None
    total = args.warmup + args.steps
    t0 = None
    for step in range(total):
        if step == args.warmup:
            t0 = clock()
            flt0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        i = (step * b) % (n - b + 1)
        xb = x[i:i + b]
        if flatten:
            xb = xb.reshape(b, -1)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), y[i:i + b])
        loss.backward()
        opt.step()
        if first_step is None:
            first_step = time.time() - t_start
    dt = clock() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    rss_kib = ru.ru_maxrss
    print(json.dumps({
        "bench": name, "impl": "pytorch", "torch": torch.__version__,
        "threads": torch.get_num_threads(), "data": source,
        "steps": args.steps, "batch": b,
        "samples_per_s": args.steps * b / dt,
        "peak_rss_mb": rss_kib / 1024.0,
        "first_step_s": first_step,
        "minflt_per_step": (ru.ru_minflt - flt0) / args.steps,
        "final_loss": float(loss),
        "malloc_tuned": bool(os.environ.get("MALLOC_TRIM_THRESHOLD_")),
    }))
    sys.stdout.flush()
