#!/usr/bin/env python3
"""bench/torch_charlm.py - the PyTorch side of docs/examples/charlm.

The same model and recipe: bytes of the fortunes text (every regular file
of /usr/share/games/fortunes but the *.dat indexes, in name order), the
first 95% for training and the last 5% for validation; `batch` streams read
side by side in chunks of `seq` bytes, a recurrent model's state carried
from chunk to chunk with .detach() (truncated BPTT) and reset to zeros at
the start of each pass; mean cross-entropy, clip_grad_norm_(1.0), Adam 2e-3.
Models: Embedding(256, 64) -> LSTM/GRU/RNN(64, 256) -> Linear(256, 256), or
Embedding(256, 128) + learned positions -> 2 pre-norm blocks
(TransformerEncoderLayer norm_first, gelu, 4 heads, ff 512, causal mask)
-> LayerNorm -> Linear(128, 256).  Validation: bits per byte over the
validation text read as `batch` streams in chunks (state carried for the
recurrent models, each chunk alone for the transformer).

Prints one JSON line with charlm's keys: model, steps,
train_tokens_per_s, val_bits_per_char, peak_rss_mb (and train_s,
first_loss, last_loss, and train_tokens_per_cpu_s: per second of the
process's CPU time, which on a shared machine leaves out the time spent
waiting for a core).
"""
import argparse
import json
import math
import os
import resource
import sys
import time


def args_():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="lstm", choices=["lstm", "gru", "rnn", "transformer"])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--data", default="/usr/share/games/fortunes")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--val-limit", type=int, default=0)
    return p.parse_args()


def load_text(path):
    if not os.path.isdir(path):
        return open(path, "rb").read()
    out = []
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if name.startswith(".") or name.endswith(".dat") or os.path.islink(full) \
                or not os.path.isfile(full):
            continue
        out.append(open(full, "rb").read())
    return b"".join(out)


def main():
    a = args_()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(a.threads)
    import torch
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    nn = torch.nn

    text = load_text(a.data)
    ntrain = len(text) * 95 // 100
    val = text[ntrain:]
    if a.val_limit:
        val = val[:a.val_limit]
    data = torch.frombuffer(bytearray(text[:ntrain]), dtype=torch.uint8).long()
    B, S = a.batch, a.seq
    stream = ntrain // B
    streams = data[:B * stream].view(B, stream)
    per_pass = (stream - 1) // S

    tf = a.model == "transformer"
    if tf:
        D = 128

        class LM(nn.Module):
            def __init__(self):
                super().__init__()
                self.tok = nn.Embedding(256, D)
                self.pos = nn.Embedding(S, D)
                self.blocks = nn.ModuleList(
                    nn.TransformerEncoderLayer(D, 4, 512, dropout=0.0, activation="gelu",
                                               batch_first=True, norm_first=True)
                    for _ in range(2))
                self.norm = nn.LayerNorm(D)
                self.head = nn.Linear(D, 256)
                self.register_buffer("mask", torch.triu(
                    torch.full((S, S), float("-inf")), 1), persistent=False)

            def forward(self, x, state=None):
                T = x.shape[1]
                h = self.tok(x) + self.pos.weight[:T]
                for b in self.blocks:
                    h = b(h, src_mask=self.mask[:T, :T])
                return self.head(self.norm(h)), None
    else:
        cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[a.model]

        class LM(nn.Module):
            def __init__(self):
                super().__init__()
                self.embed = nn.Embedding(256, 64)
                self.rnn = cls(64, 256, batch_first=True)
                self.head = nn.Linear(256, 256)

            def forward(self, x, state=None):
                out, state = self.rnn(self.embed(x), state)
                return self.head(out), state

    model = LM()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)

    def detach(state):
        if state is None:
            return None
        return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()

    losses, state = [], None
    t0, c0 = time.perf_counter(), time.process_time()
    for k in range(a.steps):
        p = (k % per_pass) * S
        if p == 0:
            state = None
        x = streams[:, p:p + S]
        y = streams[:, p + 1:p + S + 1]
        logits, state = model(x, state)
        loss = nn.functional.cross_entropy(logits.reshape(-1, 256), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        state = detach(state)
        losses.append(loss.item())
    train_s, train_cpu_s = time.perf_counter() - t0, time.process_time() - c0

    # validation in bits per byte
    model.eval()
    vb = B if len(val) // B >= 2 else 1
    vs = len(val) // vb
    v = torch.frombuffer(bytearray(val[:vb * vs]), dtype=torch.uint8).long().view(vb, vs)
    total, count, state = 0.0, 0, None
    with torch.no_grad():
        for p in range(0, vs - 1, S):
            n = min(S, vs - 1 - p)
            logits, state = model(v[:, p:p + n], state)
            total += nn.functional.cross_entropy(logits.reshape(-1, 256),
                                                 v[:, p + 1:p + n + 1].reshape(-1),
                                                 reduction="sum").item()
            count += vb * n
    w = max(1, a.steps // 10)
    print(json.dumps({
        "model": a.model, "steps": a.steps, "peer": "pytorch " + torch.__version__,
        "threads": a.threads,
        "train_tokens_per_s": round(a.steps * B * S / train_s, 1) if a.steps else None,
        "train_s": round(train_s, 3),
        "train_tokens_per_cpu_s": round(a.steps * B * S / train_cpu_s, 1) if a.steps else None,
        "train_cpu_s": round(train_cpu_s, 3),
        "first_loss": round(sum(losses[:w]) / w, 5) if losses else None,
        "last_loss": round(sum(losses[-w:]) / w, 5) if losses else None,
        "val_bits_per_char": round(total / count / math.log(2), 5),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))


if __name__ == "__main__":
    sys.exit(main())
