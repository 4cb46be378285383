#!/usr/bin/env python3
"""bench/torch_ddp.py - the PyTorch peer of data-parallel training:
DistributedDataParallel over gloo, one thread per rank, on one machine.

    torch_ddp.py --world-size W [--model mlp|cnn] [--batch B] [--steps N]

Starts W processes (torch.multiprocessing, gloo on 127.0.0.1), each
training the model of bench/torch_mlp.py or bench/torch_cnn.py on its own
slice of every global batch of W*B samples (per-rank batch B, as
fmnist_mlp under mpirun), SGD momentum 0.9, cross-entropy.  After the
timed steps each rank also times dist.all_reduce of a tensor the size of
the model's gradients.  Prints one JSON line (rank 0): world_size, batch
per rank, samples/s over all ranks, the step's time, and the allreduce's
median and range.  Run by bench/dist.
"""
import argparse
import json
import os
import socket
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_common as tc  # noqa: E402

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402


def make_model(name):
    torch.manual_seed(0)
    if name == "mlp":
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 256), torch.nn.ReLU(),
                                   torch.nn.Linear(256, 10))
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(), torch.nn.Conv2d(32, 32, 3), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(32 * 12 * 12, 128),
        torch.nn.ReLU(), torch.nn.Linear(128, 10))


def worker(rank, args, port, out):
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=args.world_size)
    model = make_model(args.model)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y, _ = tc.load_data(torch, argparse.Namespace(data=args.data, random_data=False,
                                                    batch=args.batch))
    n = x.shape[0]
    g = args.batch * args.world_size
    steps = args.warmup + args.steps

    def batch(k):
        start = (k * g) % (n - g + 1) + rank * args.batch
        return x[start:start + args.batch], y[start:start + args.batch]

    for k in range(steps):
        if k == args.warmup:
            dist.barrier()
            t0 = time.perf_counter()
        xb, yb = batch(k)
        opt.zero_grad()
        loss_fn(ddp(xb), yb).backward()  # DDP's hooks allreduce the buckets here
        opt.step()
    dist.barrier()
    dt = time.perf_counter() - t0
    # The allreduce alone, of the gradients' size (one flat tensor).
    numel = sum(p.numel() for p in model.parameters())
    buf = torch.zeros(numel)
    times = []
    for k in range(args.warmup + 50):
        dist.barrier()
        t = time.perf_counter()
        dist.all_reduce(buf)
        if k >= args.warmup:
            times.append(time.perf_counter() - t)
    times.sort()
    if rank == 0:
        out.put({"impl": "PyTorch DDP (gloo)", "model": args.model, "world_size": args.world_size,
                 "batch_per_rank": args.batch, "steps": args.steps, "params": numel,
                 "samples_per_s": args.steps * g / dt, "ms_per_step": 1e3 * dt / args.steps,
                 "allreduce_ms": 1e3 * times[len(times) // 2], "allreduce_min_ms": 1e3 * times[0],
                 "allreduce_max_ms": 1e3 * times[-1], "torch": torch.__version__})
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--world-size", type=int, default=2)
    p.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    p.add_argument("--batch", type=int, default=64, help="per rank")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--data", default=os.environ.get("FASHION_MNIST_DIR",
                                                    "/usr/share/datasets/fashion-mnist"))
    args = p.parse_args()
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(r, args, port, out))
             for r in range(args.world_size)]
    for pr in procs:
        pr.start()
    result = out.get(timeout=600)
    for pr in procs:
        pr.join()
    if any(pr.exitcode for pr in procs):
        sys.exit("torch_ddp.py: a rank failed")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
