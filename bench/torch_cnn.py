#!/usr/bin/env python3
"""bench/torch_cnn.py - the PyTorch side of the fmnist_cnn benchmark.

conv(1 -> 32, 3x3) -> ReLU -> conv(32 -> 32, 3x3) -> ReLU -> maxpool 2 ->
flatten (32 x 12 x 12 = 4608) -> 128 -> ReLU -> 10, batch 64, SGD momentum
0.9, cross-entropy, on Fashion-MNIST when present (random data of the same
shape otherwise).  Prints one JSON line (see torch_common.py); run by
bench/run.
"""
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ left in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_common as tc  # noqa: E402

args = tc.parse_args(__doc__)
tc.pin_threads(args.threads)
import torch  # noqa: E402  (after the thread pins)

torch.set_num_threads(args.threads)
torch.manual_seed(0)
model = torch.nn.Sequential(
    torch.nn.Conv2d(1, 32, 3),
    torch.nn.ReLU(),
    torch.nn.Conv2d(32, 32, 3),
    torch.nn.ReLU(),
    torch.nn.MaxPool2d(2),
    torch.nn.Flatten(),
    torch.nn.Linear(4608, 128),
    torch.nn.ReLU(),
    torch.nn.Linear(128, 10),
)
tc.train(torch, model, args, flatten=False, name="fmnist_cnn")
