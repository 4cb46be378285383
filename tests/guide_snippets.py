#!/usr/bin/env python3
"""Compile and run every code snippet of the guide, so that it cannot rot.

    guide_snippets.py --cc CC [--cflags FLAGS] --build-root DIR --lib LIB.a ...
                      [--adcalc PATH] [--update] GUIDE.md [GUIDE.zh.md ...]

What a guide may contain, and what is checked:

  ```c        a complete C program.  It is compiled against the built
              library (the static libraries given with --lib, in that order,
              and the flags pkg-config gives for the uninstalled autodiff_nn
              in DIR/meson-uninstalled) with -std=c11 -Wall -Wextra -Werror,
              as the examples are, and run in a scratch directory.  A compile
              error, a warning or a non-zero exit status fails the test.
  ```output   what the most recent ```c block prints on stdout, exactly
              (trailing blanks at line ends and at the end are ignored).
              Prose may stand between the two blocks.
  ```console  "$ adcalc ..." command lines, each followed by what it prints;
              each command is run (without a shell, with the adcalc given by
              --adcalc) and its stdout must match.
  anything else (sh, text, ...) is shown, not run.

A translation GUIDE.zh.md is checked against GUIDE.md when both are given:
the same number of headings at each level, the same kinds of code blocks in
the same order, and identical c, output and console blocks (the programs
and what they print are shared; only the prose is translated).

--update rewrites every output and console block with what the programs
print now, instead of comparing, and first copies the c, output and console
blocks of GUIDE.md into GUIDE.zh.md (when both have the same kinds of
blocks in the same order); use it after changing a snippet, and read the
diff.  Identical programs are compiled and run once.
"""

import argparse
import concurrent.futures
import hashlib
import os
import re
import shlex
import subprocess
import sys
import tempfile

FENCE = re.compile(r"^```(\S*)\s*$")
RUN_TIMEOUT = 120


class Block:
    def __init__(self, path, line, lang, text, start, end):
        self.path, self.line, self.lang, self.text = path, line, lang, text
        self.start, self.end = start, end  # line indices of the body: [start, end)
        self.output = None  # for c blocks: the output block that follows

    def where(self):
        return "%s:%d" % (self.path, self.line)


def parse(path):
    """Returns (lines, headings, blocks) of a markdown file."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    headings, blocks = [], []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m:
            j = i + 1
            while j < len(lines) and lines[j] != "```":
                j += 1
            if j == len(lines):
                raise SystemExit("%s:%d: code block is not closed" % (path, i + 1))
            blocks.append(Block(path, i + 1, m.group(1), "\n".join(lines[i + 1:j]) + "\n",
                                i + 1, j))
            i = j + 1
            continue
        h = re.match(r"^(#{1,6}) ", lines[i])
        if h:
            headings.append((len(h.group(1)), i + 1, lines[i]))
        i += 1
    last_c = None
    for b in blocks:
        if b.lang == "c":
            last_c = b
        elif b.lang == "output":
            if last_c is None or last_c.output is not None:
                raise SystemExit("%s: an output block must follow a c block (one output "
                                 "block per program)" % b.where())
            last_c.output = b
    return lines, headings, blocks


def normalise(text):
    return "\n".join(line.rstrip() for line in text.rstrip().split("\n")) + "\n"


def link_flags(build_root, libs):
    """cflags and libs for programs using the built library."""
    env = dict(os.environ)
    uninstalled = os.path.join(build_root, "meson-uninstalled")
    env["PKG_CONFIG_PATH"] = uninstalled + os.pathsep + env.get("PKG_CONFIG_PATH", "")
    try:
        out = subprocess.run(["pkg-config", "--static", "--cflags", "--libs", "autodiff_nn"],
                             env=env, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit("guide_snippets: pkg-config --static autodiff_nn in %s failed: %s"
                 % (uninstalled, getattr(e, "stderr", e)))
    cflags, extra = [], []
    build_abs = os.path.realpath(build_root)
    for tok in shlex.split(out):
        if tok.startswith("-I"):
            cflags.append(tok)
        elif tok in ("-lautodiff", "-lautodiff_nn"):
            continue  # the static libraries are linked by path instead
        elif tok.startswith("-L") and os.path.realpath(tok[2:]).startswith(build_abs):
            continue
        else:
            extra.append(tok)
    return cflags, list(libs) + extra


def build_and_run(cc, cflags, libs, code, workdir):
    """Compiles and runs one program; returns (ok, message, stdout)."""
    os.makedirs(workdir, exist_ok=True)
    src = os.path.join(workdir, "snippet.c")
    exe = os.path.join(workdir, "snippet")
    with open(src, "w", encoding="utf-8") as f:
        f.write(code)
    cmd = cc + ["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1"] + cflags + \
        ["-o", exe, src] + libs
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return False, "does not compile:\n%s\n%s" % (" ".join(cmd), r.stderr), ""
    try:
        r = subprocess.run([exe], cwd=workdir, capture_output=True, text=True,
                           timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        return False, "did not finish in %d s" % RUN_TIMEOUT, ""
    if r.returncode != 0:
        return False, "exited with status %d; stderr:\n%s" % (r.returncode, r.stderr), r.stdout
    return True, "", r.stdout


def run_console(block, tools):
    """Runs the commands of a console block; returns (ok, message, transcript)."""
    transcript, message = [], ""
    for line in block.text.rstrip("\n").split("\n"):
        if not line.startswith("$ "):
            continue
        argv = shlex.split(line[2:])
        if not argv or argv[0] not in tools:
            return False, "unknown command %r (known: %s)" % (
                argv[0] if argv else "", ", ".join(sorted(tools))), ""
        try:
            r = subprocess.run([tools[argv[0]]] + argv[1:], capture_output=True, text=True,
                               timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            return False, "%s: did not finish" % line, ""
        if r.returncode != 0:
            message = "%s: exit status %d\n%s" % (line, r.returncode, r.stderr)
        transcript.append(line + "\n" + r.stdout)
    return not message, message, "".join(transcript)


def diff(expected, actual):
    import difflib
    return "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True),
                                        "shown", "printed"))


def compare_translation(orig, trans, failures):
    """Checks that a translation keeps the sections and snippets in step."""
    (_, h1, b1), (_, h2, b2) = orig, trans
    p1, p2 = b1[0].path if b1 else "?", b2[0].path if b2 else "?"
    for level in range(1, 7):
        n1 = sum(1 for h in h1 if h[0] == level)
        n2 = sum(1 for h in h2 if h[0] == level)
        if n1 != n2:
            failures.append("%s has %d level-%d headings, %s has %d" % (p1, n1, level, p2, n2))
    if [b.lang for b in b1] != [b.lang for b in b2]:
        failures.append("%s and %s differ in their code blocks: %s vs %s"
                        % (p1, p2, [b.lang for b in b1], [b.lang for b in b2]))
        return
    for a, b in zip(b1, b2):
        if a.lang in ("c", "output", "console") and a.text != b.text:
            failures.append("%s and %s: this %s block differs (keep the programs and "
                            "their output identical, translate only the prose)\n%s"
                            % (a.where(), b.where(), a.lang, diff(a.text, b.text)))


def sync_translation(orig, trans, path):
    """Copies the c, output and console blocks of orig into trans, in place;
    returns whether the file changed."""
    b1, (lines, _, b2) = orig[2], trans
    if [b.lang for b in b1] != [b.lang for b in b2]:
        return False  # compare_translation reports it
    changed = False
    for a, b in sorted(zip(b1, b2), key=lambda p: p[1].start, reverse=True):
        if a.lang in ("c", "output", "console") and a.text != b.text:
            lines[b.start:b.end] = a.text.rstrip("\n").split("\n") if a.text.strip() else []
            changed = True
    if changed:
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
        print("copied the programs of the original into %s" % path)
    return changed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cc", required=True, help="the C compiler command")
    ap.add_argument("--build-root", required=True)
    ap.add_argument("--lib", action="append", default=[], help="a static library to link")
    ap.add_argument("--cflags", default="",
                    help="more compiler flags, e.g. the build's -fsanitize=...")
    ap.add_argument("--adcalc", help="the adcalc program, for console blocks")
    ap.add_argument("--update", action="store_true",
                    help="rewrite output and console blocks instead of comparing")
    ap.add_argument("guides", nargs="+")
    args = ap.parse_args()

    cc = shlex.split(args.cc) + shlex.split(args.cflags)
    cflags, libs = link_flags(args.build_root, [os.path.abspath(lib) for lib in args.lib])
    tools = {"adcalc": os.path.abspath(args.adcalc)} if args.adcalc else {}
    parsed = {g: parse(g) for g in args.guides}
    failures = []

    for g in args.guides:
        if g.endswith(".zh.md"):
            orig = g[:-len(".zh.md")] + ".md"
            match = [o for o in args.guides if os.path.realpath(o) == os.path.realpath(orig)]
            if match:
                if args.update and sync_translation(parsed[match[0]], parsed[g], g):
                    parsed[g] = parse(g)
                compare_translation(parsed[match[0]], parsed[g], failures)

    # Every distinct program once, in parallel.
    programs = {}
    for g in args.guides:
        for b in parsed[g][2]:
            if b.lang == "c":
                programs.setdefault(hashlib.sha1(b.text.encode()).hexdigest(), b.text)
    results = {}
    with tempfile.TemporaryDirectory(prefix="guide_snippets.") as tmp, \
            concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        futures = {pool.submit(build_and_run, cc, cflags, libs, code, os.path.join(tmp, key)):
                   key for key, code in programs.items()}
        for fut in concurrent.futures.as_completed(futures):
            results[futures[fut]] = fut.result()

    checked = 0
    for g in args.guides:
        lines, _, blocks = parsed[g]
        edits = []  # (start, end, new text)
        for b in blocks:
            if b.lang == "c":
                ok, msg, out = results[hashlib.sha1(b.text.encode()).hexdigest()]
                checked += 1
                if not ok:
                    failures.append("%s: the program %s" % (b.where(), msg))
                    continue
                if b.output is None:
                    continue
                if args.update:
                    edits.append((b.output.start, b.output.end, out))
                elif normalise(out) != normalise(b.output.text):
                    failures.append("%s: the program prints something else than the output "
                                    "block at line %d shows:\n%s" % (
                                        b.where(), b.output.line,
                                        diff(normalise(b.output.text), normalise(out))))
            elif b.lang == "console":
                checked += 1
                ok, msg, out = run_console(b, tools)
                if not ok:
                    failures.append("%s: %s" % (b.where(), msg))
                elif args.update:
                    edits.append((b.start, b.end, out))
                elif normalise(out) != normalise(b.text):
                    failures.append("%s: the commands print something else than shown:\n%s"
                                    % (b.where(), diff(normalise(b.text), normalise(out))))
        if args.update and edits:
            for start, end, text in sorted(edits, reverse=True):
                lines[start:end] = normalise(text).rstrip("\n").split("\n")
            with open(g, "w", encoding="utf-8") as f:
                f.write("\n".join(lines))
            print("updated %d blocks in %s" % (len(edits), g))

    for f in failures:
        print("FAIL: " + f + "\n", file=sys.stderr)
    print("%d snippets in %d files (%d distinct programs): %s"
          % (checked, len(args.guides), len(programs),
             "%d failures" % len(failures) if failures else "all passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
