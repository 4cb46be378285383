#!/usr/bin/env python3
"""Makes the guide's pictures from real runs.

    make_figures.py (--outdir DIR | --scratch) --dot DOT --gnuplot GNUPLOT --bin DIR

runs the figure programs of docs/figures (built by meson, found in --bin),
each writing its data into --outdir, then Graphviz on the DOT files and
gnuplot on the .gp scripts next to this file, and checks that every PNG
was written.  `ninja -C build figures` calls it; the meson test "figures"
too, with --scratch: into a new temporary directory, removed afterwards,
so that two runs at once (meson test --repeat) never read each other's
half-written files.

    backward_steps  ->  backward_step0.png ... backward_step3.png  (dot)
    lr_paths        ->  lr_paths.png                               (gnuplot)
    optim_paths     ->  optim_paths.png                            (gnuplot)
    fd_error        ->  fd_error.png                               (gnuplot)
    landscape       ->  landscape.png                              (gnuplot)
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PLOTS = ("lr_paths", "optim_paths", "fd_error", "landscape")


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if r.returncode != 0 or r.stderr.strip():
        sys.exit("make_figures: %s failed (status %d):\n%s" % (" ".join(cmd), r.returncode,
                                                               r.stderr))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--outdir")
    where.add_argument("--scratch", action="store_true",
                       help="work in a new temporary directory and remove it")
    ap.add_argument("--dot", required=True)
    ap.add_argument("--gnuplot", required=True)
    ap.add_argument("--bin", required=True, help="where the figure programs are")
    args = ap.parse_args()
    if args.scratch:
        out = tempfile.mkdtemp(prefix="figures.")
        try:
            make(args, out)
        finally:
            shutil.rmtree(out, ignore_errors=True)
    else:
        out = os.path.abspath(args.outdir)
        os.makedirs(out, exist_ok=True)
        make(args, out)


def make(args, out):
    for prog in ("backward_steps",) + PLOTS:
        run([os.path.join(args.bin, prog), out])
    pngs = []
    for dot in sorted(glob.glob(os.path.join(out, "backward_step*.dot"))):
        png = dot[:-4] + ".png"
        run([args.dot, "-Tpng", "-Gdpi=100", dot, "-o", png])
        pngs.append(png)
    if len(pngs) != 4:
        sys.exit("make_figures: expected 4 steps of the backward pass, got %d" % len(pngs))
    for name in PLOTS:
        # gnuplot reads the data from dir and writes dir/NAME.png
        run([args.gnuplot, "-e", "dir='%s'" % out.replace("'", "''"),
             os.path.join(HERE, name + ".gp")])
        pngs.append(os.path.join(out, name + ".png"))
    for png in pngs:
        with open(png, "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                sys.exit("make_figures: %s is not a PNG" % png)
    print("%d pictures in %s" % (len(pngs), out))


if __name__ == "__main__":
    main()
