#!/usr/bin/env python3
"""Memory and time of a training step with and without gradient
checkpointing, from docs/examples/charlm.

usage: bench/checkpoint_memory.py [--charlm PATH] [--reps N] [--steps N] [--quick]

For each configuration (model, sequence length T, hidden size H, segment
length K) charlm trains `--steps` steps twice - plain and with
`--checkpoint K` - and the pairs are run interleaved (plain, checkpointed,
plain, ...) `--reps` times, so that load on a shared machine hits both
alike.  From charlm's --json line:

  forward MB   the tape's arena after forward and loss (forward_arena_mb)
  peak MB      the arena's high-water mark over the step (step_arena_mb:
               ad_tape_stats.arena_peak, which also sees what a
               recomputation gives back before the step ends)
  ms/step      process CPU time per training step (train_cpu_s / steps;
               CPU time rather than wall time, which on a loaded machine
               measures the wait for a core), the median over the reps

The arena figures are exact and the same every run; the times are noise
on a shared machine, their ratio less so.  Prints a Markdown table.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# model, T (--seq), H (--hidden), K (--checkpoint), batch
CONFIGS = [
    ("lstm", 64, 256, 8, 32),
    ("lstm", 100, 512, 10, 32),
    ("lstm", 256, 512, 16, 32),
    ("gru", 256, 512, 16, 32),
    ("transformer", 64, 0, 1, 32),
    ("transformer", 256, 0, 1, 32),
]
QUICK = [CONFIGS[0], CONFIGS[4]]


def run(charlm, model, T, H, K, B, steps):
    args = [charlm, "--model", model, "--seq", str(T), "--batch", str(B), "--steps", str(steps),
            "--threads", "1", "--val-limit", str(4 * T * B), "--quiet", "--json",
            "--checkpoint", str(K)]
    if H:
        args += ["--hidden", str(H)]
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("%s: exit %d\n%s" % (" ".join(args), p.returncode, p.stderr))
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--charlm", default=os.path.join(ROOT, "build", "docs", "examples", "charlm"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="two small configurations, one rep")
    a = ap.parse_args()
    configs, reps = (QUICK, 1) if a.quick else (CONFIGS, a.reps)
    print("| model | T | H | K | forward MB | peak MB | peak / forward | ms/step "
          "| forward MB, ckpt | peak MB, ckpt | peak / plain forward | ms/step, ckpt "
          "| time ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
          "| ---: |")
    for model, T, H, K, B in configs:
        res = {0: [], K: []}
        for _ in range(reps):
            for k in (0, K):
                res[k].append(run(a.charlm, model, T, H, k, B, a.steps))
        plain, ck = res[0][0], res[K][0]
        for key in ("first_loss", "last_loss"):
            if plain[key] != ck[key]:
                sys.exit("%s T %d: %s differs with checkpointing: %s, %s"
                         % (model, T, key, plain[key], ck[key]))
        ms = {k: statistics.median(1000 * r["train_cpu_s"] / a.steps for r in res[k])
              for k in (0, K)}
        hid = str(H) if H else "d 128"
        kk = str(K) if model != "transformer" else "block"
        print("| %s | %d | %s | %s | %.1f | %.1f | %.2fx | %.0f | %.1f | %.1f | %.2fx | %.0f | %.2f |"
              % (model, T, hid, kk, plain["forward_arena_mb"], plain["step_arena_mb"],
                 plain["step_arena_mb"] / plain["forward_arena_mb"], ms[0],
                 ck["forward_arena_mb"], ck["step_arena_mb"],
                 ck["step_arena_mb"] / plain["forward_arena_mb"], ms[K], ms[K] / ms[0]))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
