#!/usr/bin/env python3
"""Tests of tests/guide_snippets.py's checks of console blocks and
hand-worked tables, on small documents written here:

    guide_snippets_selftest.py GUIDE_SNIPPETS.PY -- ARGS...

ARGS are the options the guide test passes (--cc, --build-root, --lib,
--adcalc).  Each case must pass or fail as stated, with the stated
message; a checker that accepted everything would fail here."""
import os
import subprocess
import sys
import tempfile

script = sys.argv[1]
args = sys.argv[sys.argv.index("--") + 1:]

TABLE = """| node | value | adjoint |
| --- | --- | --- |
| x | 2 | 1 |
"""
MARK = "<!-- check-table: the numbers above are in the next console block -->\n"
CONSOLE_OK = "```console\n$ adcalc x x=2\nf = 2\ndf/dx = 1\n```\n"
# log(-1): a warning on standard error, exit status 1
CONSOLE_STATUS = ("```console\n$ adcalc 'log(x)' x=-1 2>&1\nadcalc: warning: log produced nan "
                  "(argument -1)\nf = nan\ndf/dx = -1\n[exit status 1]\n```\n")

CASES = [
    ("a table whose numbers the console prints", TABLE + MARK + "\n" + CONSOLE_OK, True, ""),
    ("a number the console does not print", TABLE.replace("| 1 |", "| 1.5 |") + MARK + "\n" +
     CONSOLE_OK, False, "check-table: these numbers of the table are not in what"),
    ("a unicode minus is a minus", TABLE.replace("| 2 |", "| −2 |") + MARK + "\n" + CONSOLE_OK,
     False, "not in what the console block at line 8 prints: -2"),
    ("a marker without a table", MARK + "\n" + CONSOLE_OK, False, "no table with numbers above"),
    ("a marker without a console block", TABLE + MARK, False, "no console block follows"),
    ("stderr and the exit status shown", CONSOLE_STATUS, True, ""),
    ("a non-zero status not shown", CONSOLE_STATUS.replace("[exit status 1]\n", ""), False,
     "exit status 1, the block shows 0"),
    ("a wrong status shown", CONSOLE_STATUS.replace("[exit status 1]", "[exit status 2]"), False,
     "exit status 1, the block shows 2"),
]

failures = 0
with tempfile.TemporaryDirectory() as tmp:
    for i, (what, text, ok, message) in enumerate(CASES):
        doc = os.path.join(tmp, "case%d.md" % i)
        with open(doc, "w", encoding="utf-8") as f:
            f.write("# case\n\n" + text)
        r = subprocess.run([sys.executable, script] + args + [doc], capture_output=True,
                           text=True, timeout=120)
        passed = r.returncode == 0
        if passed != ok or message not in r.stderr:
            failures += 1
            print("FAIL: %s: exit %d, expected %s with %r\n%s%s" % (
                what, r.returncode, "success" if ok else "failure", message, r.stdout, r.stderr))
print("%d of %d cases as expected" % (len(CASES) - failures, len(CASES)))
sys.exit(1 if failures else 0)
