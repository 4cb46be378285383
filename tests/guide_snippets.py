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
              --adcalc) and its stdout must match.  A command ending in
              " 2>&1" shows standard error too (merged as written).  A
              command must exit with status 0, unless what the block shows
              for it ends with "[exit status N]": then it must exit with N.
  anything else (sh, text, ...) is shown, not run.

  <!-- check-table ... -->   after a hand-worked markdown table (one or
              more tables, up to the previous code block or heading): every
              number in those tables must appear, as a number, in what the
              next console block prints, so the table cannot drift from the
              tool's output (− is read as -).

A translation GUIDE.zh.md is checked against GUIDE.md when both are given:
the same number of headings at each level, the same kinds of code blocks in
the same order, and identical c, output and console blocks (the programs
and what they print are shared; only the prose is translated).

--update rewrites every output and console block with what the programs
print now, instead of comparing, and first copies the c, output and console
blocks of GUIDE.md into GUIDE.zh.md (when both have the same kinds of
blocks in the same order); use it after changing a snippet, and read the
diff.  Identical programs are compiled and run once.

    guide_snippets.py --commands --prefix DIR --build-root DIR --source-root DIR
                      [--require DOC ...] DOC.md ...

checks instead the command lines that the documents tell a user to type to
build a program against the library (tests/install/run.sh calls it after
installing into a scratch prefix DIR).  They are the lines of ```sh blocks:

  cc|gcc|clang ...   a compile line: run verbatim by bash in a scratch
              directory, once for every complete C program (a ```c block
              with a main) of the same document, saved under the name the
              line gives (prog.c, myprog.c); then the executable (a.out, or
              -o NAME) is checked with readelf and ldd, and run: it must
              exit with status 0 (what it prints is the other mode's test).
              A line with -static, pkg-config --static or a "# static"
              comment, or that links libautodiff.a by path, must give an
              executable that needs no libautodiff*.so; any other
              must need it and find it in the prefix (with an -rpath line:
              without LD_LIBRARY_PATH).
  prefix=...  the test sets prefix to the scratch prefix instead, so that
              the documents' instructions for a prefix other than /usr/local
              are followed exactly;
  export ...  run verbatim (with that prefix) before every compile line and
              every program: the documents' PKG_CONFIG_PATH and
              LD_LIBRARY_PATH, in document order, are the only ones set;
  ./a.out, ./NAME    run (every executable is);
  sudo ..., meson ...  build and install steps: the caller has done them.

Any other line in a ```sh block fails the test, as does a compile line
outside one (an indented block, say), which the test could not run, and a
--require'd document without any compile line.  A compile line of an
uninstalled build (build/... paths, run with build/ being --build-root and
the source root's directories next to it) follows the documented "drop
-lopenblas or -lgomp" rule for the way --build-root was configured, and a
-static line is skipped, as the README says, for a library that needs
clang's libomp.
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


CHECK_TABLE = re.compile(r"^<!--\s*check-table\b")
NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])")


def numbers(text):
    return NUMBER.findall(text.replace("\u2212", "-"))


def table_checks(lines, blocks):
    """The check-table markers of a document: (line, table numbers, console
    block) for each; the tables are the '|' lines between the marker and the
    code block or heading before it."""
    out = []
    for i, line in enumerate(lines):
        if not CHECK_TABLE.match(line):
            continue
        rows, j = [], i - 1
        while j >= 0 and not FENCE.match(lines[j]) and not lines[j].startswith("#"):
            if lines[j].startswith("|") and not re.match(r"^\|[\s|:-]+\|\s*$", lines[j]):
                rows.append(lines[j])
            j -= 1
        after = [b for b in blocks if b.line > i + 1]
        console = after[0] if after and after[0].lang == "console" else None
        out.append((i + 1, [n for r in rows for n in numbers(r)], console))
    return out


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


EXIT_STATUS = re.compile(r"^\[exit status (\d+)\]$")


def run_console(block, tools):
    """Runs the commands of a console block; returns (ok, message, transcript)."""
    transcript, message = [], ""
    lines = block.text.rstrip("\n").split("\n")
    for i, line in enumerate(lines):
        if not line.startswith("$ "):
            continue
        # the status the block shows for this command: "[exit status N]"
        # closing what it prints, else 0
        shown = 0
        for later in lines[i + 1:]:
            if later.startswith("$ "):
                break
            m = EXIT_STATUS.match(later)
            if m:
                shown = int(m.group(1))
        argv = shlex.split(line[2:])
        merge = bool(argv) and argv[-1] == "2>&1"
        if merge:
            argv = argv[:-1]
        if not argv or argv[0] not in tools:
            return False, "unknown command %r (known: %s)" % (
                argv[0] if argv else "", ", ".join(sorted(tools))), ""
        try:
            r = subprocess.run([tools[argv[0]]] + argv[1:], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT if merge else subprocess.PIPE,
                               text=True, timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            return False, "%s: did not finish" % line, ""
        if r.returncode != shown:
            message = "%s: exit status %d, the block shows %d\n%s" % (
                line, r.returncode, shown, r.stderr or "")
        transcript.append(line + "\n" + r.stdout +
                          ("[exit status %d]\n" % r.returncode if r.returncode else ""))
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


# ---- --commands: the documents' compile lines against an installed prefix

COMPILERS = ("cc", "gcc", "clang", "c99")
COMPILE_LINE = re.compile(r"^\s*(?:\$\s+)?(?:%s)\s+.*\.c\b" % "|".join(COMPILERS))
INSTALL_STEPS = ("sudo", "meson", "ninja")
SH_LANGS = ("sh", "shell", "bash")


class Command:
    def __init__(self, path, line, text):
        self.path, self.line, self.text = path, line, text

    def where(self):
        return "%s:%d" % (self.path, self.line)


def sh_lines(block):
    """The logical lines of a shell block (backslash continuations joined),
    with their line numbers."""
    out, pending, first = [], "", None
    for i, raw in enumerate(block.text.rstrip("\n").split("\n")):
        if first is None:
            first = block.line + 1 + i
        if raw.rstrip().endswith("\\"):
            pending += raw.strip()[:-1].rstrip() + " "
            continue
        out.append((first, (pending + raw.strip()).strip()))
        pending, first = "", None
    if pending:
        out.append((first, pending.strip()))
    return out


def doc_commands(path, failures):
    """Returns (env lines, compile commands, programs) of one document."""
    lines, _, blocks = parse(path)
    programs = [b for b in blocks if b.lang == "c" and re.search(r"\bmain\s*\(", b.text)]
    env, compiles = [], []
    fenced = set()
    for b in blocks:
        fenced.update(range(b.start - 1, b.end + 1))
        if b.lang not in SH_LANGS:
            if b.lang not in ("c", "output"):
                for k, text in enumerate(b.text.split("\n")):
                    if COMPILE_LINE.match(text):
                        failures.append("%s:%d: a compile line in a ```%s block, which the "
                                        "install test does not run; put it in a ```sh block"
                                        % (path, b.line + 1 + k, b.lang))
            continue
        for n, text in sh_lines(b):
            word = text.split()[0] if text.split() else ""
            if not text or text.startswith("#"):
                continue
            if word in COMPILERS:
                compiles.append(Command(path, n, text))
            elif re.match(r"^prefix=\S", text):
                pass  # the scratch prefix stands in
            elif word == "export":
                env.append(Command(path, n, text))
            elif re.match(r"^\./[\w.-]+(\s|$)", text) or word in INSTALL_STEPS:
                pass
            else:
                failures.append("%s:%d: the install test does not know how to check this "
                                "line of a ```sh block: %s" % (path, n, text))
    for i, text in enumerate(lines):
        if i not in fenced and COMPILE_LINE.match(text) and text.startswith("    "):
            failures.append("%s:%d: a compile line in an indented block, which the install "
                            "test does not run; put it in a ```sh block" % (path, i + 1))
    if compiles and not programs:
        failures.append("%s: compile lines but no complete C program to build with them"
                        % path)
    return env, compiles, programs


def pc_field(pcfile, name):
    try:
        with open(pcfile, encoding="utf-8") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return " %s " % line[len(name) + 1:].strip().replace(",", " ")
    except OSError:
        pass
    return "  "


def adapt_uninstalled(text, build_root):
    """Applies the documented 'drop -lopenblas or -lgomp if your build was
    configured without them; -lomp in place of -lgomp with clang' to a
    compile line of the build tree; returns (line, notes)."""
    pc = os.path.join(build_root, "meson-private", "autodiff.pc")
    private, requires = pc_field(pc, "Libs.private"), pc_field(pc, "Requires.private")
    notes = []
    if " openblas " not in requires and " cblas " not in requires and " -lopenblas" in text:
        text = text.replace(" -lopenblas", "")
        notes.append("dropped -lopenblas")
    if " -lgomp " not in private and " -lgomp" in text:
        omp = [t for t in private.split() if t in ("-lomp", "-lomp5")]
        text = text.replace(" -lgomp", " " + omp[0] if omp else "")
        notes.append("-lgomp -> %s" % (omp[0] if omp else "dropped"))
    return text, notes


def needed(exe):
    r = subprocess.run(["readelf", "-d", exe], capture_output=True, text=True)
    return re.findall(r"\(NEEDED\).*\[(.*)\]", r.stdout)


def check_command(cmd_text, program, prelude, base_env, run_env, prefix, ctx, workdir):
    """Builds one program with one documented line and runs it; returns
    (ok, message)."""
    os.makedirs(workdir, exist_ok=True)
    words = cmd_text.split()
    sources = [w for w in words if re.match(r"^[\w.-]+\.c$", w)]
    if len(sources) != 1:
        return False, "names %d C files; want one, the program" % len(sources)
    with open(os.path.join(workdir, sources[0]), "w", encoding="utf-8") as f:
        f.write(program.text)
    notes = []
    if re.search(r"(^|\s)build/", cmd_text):
        # A line for the build tree, run from a copy of the source root's
        # layout: build/ is the build being tested.
        os.symlink(ctx["build_root"], os.path.join(workdir, "build"))
        for name in os.listdir(ctx["source_root"]):
            full = os.path.join(ctx["source_root"], name)
            if os.path.isdir(full) and not name.startswith((".", "build")) \
                    and not os.path.exists(os.path.join(workdir, name)):
                os.symlink(full, os.path.join(workdir, name))
        cmd_text, notes = adapt_uninstalled(cmd_text, ctx["build_root"])
    if "-static" in words and ctx["libomp"]:
        return True, "skipped: README.md says that a library built by clang with OpenMP " \
            "(-lomp) does not link fully statically"
    script = "set -e\n%s\n%s\n" % (prelude, cmd_text)
    r = subprocess.run(["bash", "-c", script], cwd=workdir, env=base_env,
                       capture_output=True, text=True)
    shown = cmd_text + (" (%s)" % ", ".join(notes) if notes else "")
    if r.returncode != 0:
        return False, "`%s` failed (status %d):\n%s" % (shown, r.returncode, r.stderr)
    exe = os.path.join(workdir, words[words.index("-o") + 1] if "-o" in words[:-1]
                       else "a.out")
    if not os.path.exists(exe):
        return False, "`%s` made no %s" % (shown, os.path.basename(exe))
    libs = [n for n in needed(exe) if n.startswith("libautodiff")]
    # -static, pkg-config --static, a "# static" comment or archives by path.
    static = re.search(r"(^|\s)--?static\b|#.*\bstatic\b|libautodiff\w*\.a\b", cmd_text)
    env = dict(run_env)
    if "-rpath" in cmd_text:
        env.pop("LD_LIBRARY_PATH", None)
    if static and libs:
        return False, "`%s`: the executable needs %s; a static link must not" % (
            shown, ", ".join(libs))
    if not static:
        if not libs:
            return False, "`%s`: the executable does not use libautodiff*.so" % shown
        r = subprocess.run(["ldd", exe], env=env, capture_output=True, text=True)
        for lib in libs:
            m = re.search(r"^\s*%s => (\S+)" % re.escape(lib), r.stdout, re.M)
            where = os.path.realpath(m.group(1)) if m else "not found"
            if not where.startswith(os.path.realpath(prefix) + os.sep):
                return False, "`%s`: %s resolves to %s, not into the prefix %s%s" % (
                    shown, lib, where, prefix,
                    " (without LD_LIBRARY_PATH)" if "-rpath" in cmd_text else "")
    try:
        r = subprocess.run([exe], cwd=workdir, env=env, capture_output=True, text=True,
                           timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        return False, "`%s`: the program did not finish in %d s" % (shown, RUN_TIMEOUT)
    if r.returncode != 0:
        return False, "`%s`: the program exited with status %d:\n%s" % (
            shown, r.returncode, r.stderr)
    return True, shown


def commands_main(argv):
    ap = argparse.ArgumentParser(prog="guide_snippets.py --commands")
    ap.add_argument("--prefix", required=True, help="the scratch install prefix")
    ap.add_argument("--build-root", required=True)
    ap.add_argument("--source-root", required=True)
    ap.add_argument("--require", action="append", default=[],
                    help="a document that must have a compile line")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("docs", nargs="+")
    args = ap.parse_args(argv)
    failures = []
    prefix = os.path.abspath(args.prefix)
    installed_pc = [os.path.join(d, "autodiff.pc") for d, _, files in os.walk(prefix)
                    if d.endswith("pkgconfig") and "autodiff.pc" in files]
    ctx = {"build_root": os.path.abspath(args.build_root),
           "source_root": os.path.abspath(args.source_root),
           "libomp": bool(installed_pc) and bool(
               re.search(r" -lomp5? ", pc_field(installed_pc[0], "Libs.private")))}
    docs = list(dict.fromkeys(os.path.normpath(d) for d in args.docs + args.require))
    parsed = {d: doc_commands(d, failures) for d in docs}
    for d in args.require:
        if not parsed[os.path.normpath(d)][1]:
            failures.append("%s: no compile line in a ```sh block found" % d)

    # The environment the documents set up, and nothing of the caller's.
    base_env = {k: v for k, v in os.environ.items()
                if k not in ("PKG_CONFIG_PATH", "LD_LIBRARY_PATH", "LIBRARY_PATH",
                             "CPATH", "C_INCLUDE_PATH", "prefix")}
    exports = [c for d in docs for c in parsed[d][0]]
    prelude = "\n".join(["prefix=%s" % shlex.quote(prefix)] + [c.text for c in exports])
    r = subprocess.run(["bash", "-c", "set -e\n%s\nenv -0" % prelude], env=base_env,
                       capture_output=True, text=True)
    if r.returncode != 0:
        failures.append("the export lines fail:\n%s\n%s" % (prelude, r.stderr))
        run_env = base_env
    else:
        run_env = dict(kv.split("=", 1) for kv in r.stdout.split("\0") if "=" in kv)
    for name in ("PKG_CONFIG_PATH", "LD_LIBRARY_PATH"):
        if name not in run_env:
            failures.append("no document sets %s for a prefix other than /usr/local" % name)

    jobs = {}  # (line, program) -> the places that use it
    for d in docs:
        _, compiles, programs = parsed[d]
        for c in compiles:
            for p in programs:
                jobs.setdefault((c.text, p.text), []).append((c, p))
    results = {}
    with tempfile.TemporaryDirectory(prefix="doc_commands.") as tmp, \
            concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        futures = {}
        for i, (key, uses) in enumerate(jobs.items()):
            futures[pool.submit(check_command, key[0], uses[0][1], prelude, base_env, run_env,
                                prefix, ctx, os.path.join(tmp, str(i)))] = key
        for fut in concurrent.futures.as_completed(futures):
            results[futures[fut]] = fut.result()

    n_lines = n_builds = 0
    for d in docs:
        _, compiles, programs = parsed[d]
        for c in compiles:
            n_lines += 1
            bad = 0
            skipped = ""
            for p in programs:
                n_builds += 1
                ok, msg = results[(c.text, p.text)]
                if not ok:
                    bad += 1
                    failures.append("%s: with the program of %s: %s" % (c.where(), p.where(), msg))
                elif msg.startswith("skipped"):
                    skipped = msg
            if skipped:
                print("%s: %s: %s" % (c.where(), skipped, c.text))
            elif args.verbose or bad:
                print("%s: %d of %d programs %s: %s" % (
                    c.where(), len(programs) - bad, len(programs),
                    "built and ran" if not bad else "ok", c.text))
    for f in failures:
        print("FAIL: " + f + "\n", file=sys.stderr)
    print("%d compile lines and %d export lines in %d documents, %d programs built "
          "(%d distinct builds): %s"
          % (n_lines, len(exports), len(docs), n_builds, len(jobs),
             "%d failures" % len(failures) if failures else "all passed"))
    return 1 if failures else 0


def main():
    if sys.argv[1:2] == ["--commands"]:
        return commands_main(sys.argv[2:])
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

    # Hand-worked tables against the console output that follows them.
    for g in args.guides if not args.update else []:  # (after --update: run again)
        lines, _, blocks = parsed[g]
        for line, nums, console in table_checks(lines, blocks):
            checked += 1
            if console is None:
                failures.append("%s:%d: check-table: no console block follows" % (g, line))
                continue
            if not nums:
                failures.append("%s:%d: check-table: no table with numbers above" % (g, line))
                continue
            printed = set(float(n) for n in numbers(console.text))
            missing = sorted(set(n for n in nums if float(n) not in printed), key=nums.index)
            if missing:
                failures.append("%s:%d: check-table: these numbers of the table are not in what "
                                "the console block at line %d prints: %s"
                                % (g, line, console.line, ", ".join(missing)))

    for f in failures:
        print("FAIL: " + f + "\n", file=sys.stderr)
    print("%d snippets in %d files (%d distinct programs): %s"
          % (checked, len(args.guides), len(programs),
             "%d failures" % len(failures) if failures else "all passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
