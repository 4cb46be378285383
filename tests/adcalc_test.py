#!/usr/bin/env python3
"""Tests of tools/adcalc: usage  adcalc_test.py PATH/TO/adcalc

Every expected number below is derived by hand (the derivation is in the
comment of each row), never by running adcalc, so the table checks the
engine against calculus rather than against itself.  Set DOT=/path/to/dot
to also render the --dot output (meson does when Graphviz is installed).
"""
import json
import math
import os
import re
import subprocess
import sys
import tempfile

ADCALC = sys.argv[1] if len(sys.argv) > 1 else "adcalc"
failures = []
count = 0


def run(*args):
    p = subprocess.run([ADCALC, *args], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def check(cond, what):
    global count
    count += 1
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def close(a, b, tol=1e-12):
    if a is None or b is None:
        return a is b
    return abs(a - b) <= tol * max(1.0, abs(b))


s2, c2 = math.sin(2), math.cos(2)
ln2 = math.log(2)
sig = 1 / (1 + math.exp(-0.3))

# (expression, point, value, gradient, hessian); variables in point order.
TABLE = [
    # x sin x: f' = sin x + x cos x, f'' = 2 cos x - x sin x
    ("x*sin(x)", {"x": 2}, 2 * s2, [s2 + 2 * c2], [[2 * c2 - 2 * s2]]),
    # x^2 y + y^3 at (1,2): grad (2xy, x^2 + 3y^2), H = [[2y, 2x], [2x, 6y]]
    ("x^2*y + y^3", {"x": 1, "y": 2}, 10, [4, 13], [[4, 2], [2, 12]]),
    # the variables in another order: the output follows the command line
    ("x^2*y + y^3", {"y": 2, "x": 1}, 10, [13, 4], [[12, 2], [2, 4]]),
    # -x^2 is -(x^2): value -9, not 9
    ("-x^2", {"x": 3}, -9, [-6], [[-2]]),
    ("(-x)^2", {"x": 3}, 9, [6], [[2]]),
    # ^ is right-associative: 2^(3^2) = 2^9
    ("2^3^2", {}, 512, [], []),
    ("2^-1", {}, 0.5, [], []),
    # - and / are left-associative
    ("8-4-2", {}, 2, [], []),
    ("8/4/2", {}, 1, [], []),
    ("x - -x", {"x": 1.5}, 3, [2], [[0]]),
    ("+x", {"x": 1.5}, 1.5, [1], [[0]]),
    ("1 + 2*3", {}, 7, [], []),
    # number forms
    ("1e-3*x + .5 + 2.5E+10", {"x": 2}, 2e-3 + 0.5 + 2.5e10, [1e-3], [[0]]),
    # exp(log x) = x: gradient 1 through two chain-rule steps (1/x times x)
    ("exp(log(x))", {"x": 1.5}, 1.5, [1], [[0]]),
    # max/min: the gradient goes to the larger (smaller) argument; on a tie
    # it is split evenly, 1/2 to each (PyTorch's rule)
    ("max(x,y)", {"x": 1, "y": 2}, 2, [0, 1], [[0, 0], [0, 0]]),
    ("max(x,y)", {"x": 2, "y": 2}, 2, [0.5, 0.5], [[0, 0], [0, 0]]),
    ("min(x,y)", {"x": 3, "y": 1}, 1, [0, 1], [[0, 0], [0, 0]]),
    ("min(x,y)", {"x": 1, "y": 1}, 1, [0.5, 0.5], [[0, 0], [0, 0]]),
    # sigmoid s: s' = s(1-s), s'' = s(1-s)(1-2s); at 0: 1/2, 1/4, 0
    ("sigmoid(x)", {"x": 0}, 0.5, [0.25], [[0]]),
    ("sigmoid(x)", {"x": 0.3}, sig, [sig * (1 - sig)], [[sig * (1 - sig) * (1 - 2 * sig)]]),
    # relu: derivative 1 for x > 0, 0 for x < 0, and 0 at the kink x = 0
    ("relu(x)", {"x": 0}, 0, [0], [[0]]),
    ("relu(x)", {"x": 2}, 2, [1], [[0]]),
    ("relu(x)", {"x": -1}, 0, [0], [[0]]),
    ("abs(x)", {"x": -3}, 3, [-1], [[0]]),
    # x/y: grad (1/y, -x/y^2), H = [[0, -1/y^2], [-1/y^2, 2x/y^3]]
    ("x/y", {"x": 1, "y": 2}, 0.5, [0.5, -0.25], [[0, -0.25], [-0.25, 0.25]]),
    # sqrt x at 4: 1/(2 sqrt x) = 1/4, -1/(4 x^(3/2)) = -1/32
    ("sqrt(x)", {"x": 4}, 2, [0.25], [[-1 / 32]]),
    # pow(x,y) at (2,3): grad (y x^(y-1), x^y ln x);
    # H = [[y(y-1)x^(y-2), x^(y-1)(1 + y ln x)], [.., x^y ln^2 x]]
    ("pow(x,y)", {"x": 2, "y": 3}, 8, [12, 8 * ln2],
     [[12, 4 * (1 + 3 * ln2)], [4 * (1 + 3 * ln2), 8 * ln2 * ln2]]),
    ("x^y", {"x": 2, "y": 3}, 8, [12, 8 * ln2],
     [[12, 4 * (1 + 3 * ln2)], [4 * (1 + 3 * ln2), 8 * ln2 * ln2]]),
    # tanh: t' = 1 - t^2, t'' = -2t(1 - t^2)
    ("tanh(x)", {"x": 0.5}, math.tanh(0.5), [1 - math.tanh(0.5) ** 2],
     [[-2 * math.tanh(0.5) * (1 - math.tanh(0.5) ** 2)]]),
    # tan: 1 + tan^2, 2 tan (1 + tan^2)
    ("tan(x)", {"x": 0.5}, math.tan(0.5), [1 + math.tan(0.5) ** 2],
     [[2 * math.tan(0.5) * (1 + math.tan(0.5) ** 2)]]),
    ("cos(x)", {"x": 1}, math.cos(1), [-math.sin(1)], [[-math.cos(1)]]),
    # a variable used three times: its adjoint is the sum of three terms
    ("x*x*x", {"x": 2}, 8, [12], [[12]]),
    ("sin(x)^2 + cos(x)^2", {"x": 0.7}, 1, [0], [[0]]),
    # constants: e^x is its own derivative; pi
    ("e^x", {"x": 1}, math.e, [math.e], [[math.e]]),
    ("pi*x^2", {"x": 2}, 4 * math.pi, [4 * math.pi], [[2 * math.pi]]),
    # a NAME=VALUE for e makes it a variable
    ("e*x", {"e": 3, "x": 2}, 6, [2, 3], [[0, 1], [1, 0]]),
    # x*y + sin(x), the --trace example, and a variable absent from f
    ("x*y + sin(x)", {"x": 2, "y": 3, "z": 5}, 6 + s2, [3 + c2, 2, 0],
     [[-s2, 1, 0], [1, 0, 0], [0, 0, 0]]),
]


def point_args(point):
    return [f"{k}={v!r}" for k, v in point.items()]


for expr, point, value, grad, hess in TABLE:
    rc, out, err = run("--json", "--hessian", expr, *point_args(point))
    what = f"{expr} at {point}"
    check(rc == 0, f"{what}: exit {rc}, stderr {err!r}")
    try:
        obj = json.loads(out)
    except ValueError:
        check(False, f"{what}: not JSON: {out!r}")
        continue
    check(out.count("\n") == 1 and out.endswith("}\n"), f"{what}: not one JSON line: {out!r}")
    check(close(obj["value"], value), f"{what}: value {obj['value']} != {value}")
    check(obj["variables"] == list(point), f"{what}: variables {obj['variables']}")
    check(len(obj["grad"]) == len(grad), f"{what}: grad length")
    for i, (a, b) in enumerate(zip(obj["grad"], grad)):
        check(close(a, b, 1e-10), f"{what}: grad[{i}] {a} != {b}")
    check(len(obj["hessian"]) == len(hess), f"{what}: hessian rows")
    for i, (ra, rb) in enumerate(zip(obj["hessian"], hess)):
        for j, (a, b) in enumerate(zip(ra, rb)):
            check(close(a, b, 1e-10), f"{what}: hessian[{i}][{j}] {a} != {b}")
    # without --hessian there is no "hessian" key
    rc, out, _ = run("--json", expr, *point_args(point))
    check(rc == 0 and "hessian" not in json.loads(out), f"{what}: hessian without --hessian")

# --json writes 17 significant digits, so doubles survive the round trip.
rc, out, _ = run("--json", "x*sin(x)", "x=2")
v = 2 * math.sin(2)
check(f'"value": {v:.17g}' in out, f"17 digits: {out!r}")
check(json.loads(out)["value"] == v, "value round-trips exactly")

# The text output.
rc, out, _ = run("x*y + sin(x)", "x=2", "y=3")
check(rc == 0 and out.splitlines()[0] == f"f = {6 + s2!r}", f"text value line: {out!r}")
check("df/dy = 2" in out.splitlines(), f"text gradient line: {out!r}")
rc, out, _ = run("--hessian", "x^2*y + y^3", "x=1", "y=2")
check("hessian (rows and columns: x, y)" in out and "[ 4,  2 ]" in out and "[ 2, 12 ]" in out,
      f"text hessian: {out!r}")
# an expression starting with '-' needs no "--"; "--" works too
for args in (["-x^2", "x=3"], ["--", "-x^2", "x=3"]):
    rc, out, _ = run(*args)
    check(rc == 0 and out.startswith("f = -9\n"), f"{args}: {out!r}")

# ---- NaN and Inf: exit 1, a warning naming the op, null in JSON ------------------
rc, out, err = run("log(x)", "x=-1")
check(rc == 1, f"log(-1): exit {rc}")
check("adcalc: warning: log produced nan (argument -1)" in err, f"log(-1) warning: {err!r}")
rc, out, err = run("--json", "log(x)", "x=-1")
obj = json.loads(out)
check(rc == 1 and obj["value"] is None and obj["grad"] == [-1.0], f"log(-1) json: {out!r}")
check(any("log produced nan" in w for w in obj["warnings"]) and "value is nan" in obj["warnings"],
      f"log(-1) json warnings: {obj.get('warnings')}")
rc, out, err = run("1/x", "x=0")
check(rc == 1 and "div produced inf (arguments 1, 0)" in err, f"1/0: {rc} {err!r}")
# a finite value with an infinite derivative: d sqrt(x)/dx at 0
rc, out, err = run("--json", "sqrt(x)", "x=0")
obj = json.loads(out)
check(rc == 1 and obj["value"] == 0 and obj["grad"] == [None], f"sqrt(0): {out!r}")
check("the derivative of sqrt is inf (argument 0)" in err, f"sqrt(0) warning: {err!r}")
# a NaN born inside is reported once, where it is born
rc, out, err = run("exp(log(x))*2", "x=-1")
check(err.count("warning") == 1, f"one warning per NaN: {err!r}")

# ---- errors: message, caret, exit status 2 ------------------------------------------
ERRORS = [
    (["x*(y+1))", "x=1", "y=2"], "adcalc: unexpected ')' at column 8\n  x*(y+1))\n         ^\n"),
    (["sin(x) + (x", "x=1"], "adcalc: unexpected end of expression (expected ')' to close the '(' "
                             "at column 10) at column 12\n"),
    (["sine(x)", "x=1"], "adcalc: unknown function 'sine' at column 1\n  sine(x)\n  ^\n"),
    (["2 * foo(x)", "x=1"], "adcalc: unknown function 'foo' at column 5\n"),
    (["max(x)", "x=1"], "adcalc: max takes 2 arguments, got 1 at column 1\n"),
    (["sin x", "x=1"], "adcalc: expected '(' after the function name 'sin' at column 5\n"),
    (["2x", "x=1"], "adcalc: unexpected 'x' after the number '2' (write 2*x for a product) at column 2\n"),
    (["1e+", "x=1"], "adcalc: malformed number '1e+' (exponent without digits) at column 1\n"),
    (["x $ y"], "adcalc: unexpected '$' at column 3\n"),
    ([""], "adcalc: empty expression at column 1\n"),
    (["(" * 300 + "x" + ")" * 300, "x=1"], "adcalc: expression nested too deeply (more than 200"),
    # nesting (not a flat chain) is still bounded: 5001 nested calls
    (["sin(" * 5001 + "x" + ")" * 5001, "x=1"],
     "adcalc: expression too deep (more than 5000 nested"),
    # hexadecimal: rejected with a message that says so, in expressions and values
    (["0x10 + x", "x=1"], "adcalc: hexadecimal numbers such as '0x10' are not supported; write "
                          "numbers in decimal at column 1\n"),
    (["x", "x=0x10"], "adcalc: the value '0x10' of x is hexadecimal; write it in decimal\n"),
    (["x", "x=0x1p-3"], "adcalc: the value '0x1p-3' of x is hexadecimal"),
    # hints for notations of other languages
    (["x**2", "x=1"], "adcalc: unexpected '**' (write ^ for a power: x^2) at column 2\n"),
    (["ln(x)", "x=1"], "adcalc: unknown function 'ln' (log is the natural logarithm: write "
                       "log(x)) at column 1\n"),
    (["log10(x)", "x=1"], "adcalc: unknown function 'log10' (write log(x)/log(10))"),
    (["2pi"], "adcalc: unexpected 'pi' after the number '2' (write 2*pi for a product)"),
    # a non-ASCII character is shown whole, and columns count characters:
    # the caret stands under it although '·' before it takes two bytes
    (["x·y ⋯", "x=1", "y=2"], "adcalc: unexpected character '⋯' (U+22EF) at column 5\n"
                             "  x·y ⋯\n      ^\n"),
    (["x+y", "x=1"], "adcalc: variable 'y' has no value (give y=...)\n  x+y\n    ^\n"),
    (["x", "x=abc"], "adcalc: the value 'abc' of x is not a number\n"),
    (["x", "x="], "adcalc: the value '' of x is not a number\n"),
    (["x", "x=2y"], "adcalc: the value '2y' of x is not a number\n"),
    (["x", "x=nan"], "adcalc: the value 'nan' of x is not a finite number\n"),
    (["x", "x=1", "x=2"], "adcalc: variable 'x' given twice\n"),
    (["x", "2x=1"], "adcalc: '2x' is not a variable name (in '2x=1')\n"),
    (["x", "x"], "adcalc: expected NAME=VALUE, got 'x'\n"),
    ([], "adcalc: no expression given\n"),
    (["--frobnicate", "x", "x=1"], "adcalc: unknown option '--frobnicate'\n"),
    (["--dot", "--json", "x", "x=1"], "adcalc: --dot prints only the graph"),
    (["--grid=1", "x", "x=0:1"], "adcalc: --grid needs a number of points from 2"),
    (["--grid=3", "x", "x=1"], "adcalc: --grid needs a range NAME=LO:HI"),
    (["--grid=3", "x", "x=1:0"], "adcalc: the range '1:0' of x is not LO:HI"),
    (["--grid=3", "x+y+z", "x=0:1", "y=0:1", "z=0:1"], "adcalc: --grid spans at most two"),
    (["--grid=3", "--descend=sgd", "x", "x=0:1"], "adcalc: --grid prints the surface only"),
    (["x", "x=0:1"], "adcalc: the value '0:1' of x is not a number"),
    (["--descend=newton", "x", "x=1"], "adcalc: --descend takes sgd, momentum or adam"),
    (["--descend=sgd", "--trace", "x", "x=1"], "adcalc: --descend prints the path only"),
    (["--descend=sgd", "--lr=-1", "x", "x=1"], "adcalc: --lr needs a positive number"),
    (["--descend=sgd", "--steps=many", "x", "x=1"], "adcalc: --steps needs a whole number"),
    # HI - LO overflowed: the points were nan and inf; HI in hexadecimal was read
    (["--grid=3", "x", "x=-1e308:1e308"],
     "adcalc: the range '-1e308:1e308' of x is wider than a double holds"),
    (["--grid=2", "x", "x=0:0x10"], "adcalc: the value '0x10' of x is hexadecimal"),
    # a digit after a superscript is not more exponent (x²3 read as x^23)
    (["x²3", "x=2"], "adcalc: unexpected '3' at column 3"),
]
for args, message in ERRORS:
    rc, out, err = run(*args)
    check(rc == 2, f"{args}: exit {rc} (expected 2)")
    check(err.startswith(message), f"{args}: stderr {err!r} does not start with {message!r}")
    check(out == "", f"{args}: stdout not empty: {out!r}")
# a NAME=VALUE for a name the expression does not use: a warning only
rc, out, err = run("x", "x=1", "z=2")
check(rc == 0 and "adcalc: warning: variable 'z' does not appear in the expression" in err,
      f"unused variable: {rc} {err!r}")
check("df/dz = 0" in out, f"unused variable's gradient: {out!r}")
rc, out, _ = run("--json", "x", "x=1", "z=2")
check(json.loads(out)["warnings"][0].startswith("variable 'z' does not appear"), "json warning")

# ---- help and version ---------------------------------------------------------------
rc, out, _ = run("--help")
check(rc == 0 and out.startswith("Usage: adcalc") and "Exit status:" in out, "--help")
for code in ("0  success", "1  the value or a derivative is NaN", "2  usage error",
             "3  --check"):
    check(code in out, f"--help documents exit status {code!r}")
rc2, out2, _ = run("-h")
check(rc2 == 0 and out2 == out, "-h is --help")
rc, out, _ = run("--version")
check(rc == 0 and re.fullmatch(r"adcalc \(autodiff\) \d+\.\d+\.\d+\n", out), f"--version: {out!r}")

# ---- --check --------------------------------------------------------------------------
rc, out, _ = run("--check", "x*y + sin(x)", "x=2", "y=3")
check(rc == 0 and "gradcheck: pass" in out and "df/dx: tape" in out, f"--check pass: {out!r}")
# at relu's kink the tape says 0 (the chosen subgradient) and central
# differences say 1/2: a real disagreement, exit status 3
rc, out, _ = run("--check", "relu(x)", "x=0")
check(rc == 3 and "gradcheck: FAIL" in out, f"--check relu(0): {rc} {out!r}")
rc, out, _ = run("--json", "--check", "x^3", "x=2")
obj = json.loads(out)
check(rc == 0 and obj["gradcheck"]["passed"] is True and obj["gradcheck"]["max_error"] < 1e-6,
      f"--json --check: {out!r}")
# the worst entry: d(x^3)/dx = 3x^2 = 12, central difference with h = 2e-6
# (the step is 1e-6 max(1, |x|)), whose error h^2 f'''(x) / 6 is 4e-12
w = obj["gradcheck"].get("worst", {})
check(w.get("variable") == "x" and w.get("input") == 0 and w.get("element") == 0
      and w.get("analytic") == 12 and close(w.get("numeric"), 12, 1e-8)
      and w.get("abs_error", 1) < 1e-6 and w.get("rel_error", 1) < 1e-7
      and close(w.get("step"), 2e-6, 1e-9) and w.get("richardson") is False,
      f"--json --check worst entry: {out!r}")
# 0^x at x = 0: the library's convention (d(a^b)/db = 0 where a = 0) would
# make the tape say 0 while 0^(-h) = inf makes every central difference
# -inf; there is no derivative (0^x is 0 for x > 0, 1 at 0, inf below), so
# adcalc stops with a domain error before checking anything.  (That the
# check fails on a non-finite numeric derivative is tested in
# tests/test_gradcheck.c.)
for args in (["--check", "0^x", "x=0"], ["--json", "--check", "0^x", "x=0"]):
    rc, out, err = run(*args)
    check(rc == 1 and out == "" and "base 0 and exponent 0" in err, f"{args}: {rc} {out!r} {err!r}")
# Near a domain edge (1e-6 from 0) the first step x - h reaches 0: log(0)
# = -inf (which used to pass against anything, being infinite) and
# sqrt's difference is 707 instead of 500 (which used to fail).  Smaller
# steps and Richardson extrapolation find the derivative.
for expr, deriv in (("log(x)", 1e6), ("sqrt(x)", 500.0)):
    rc, out, _ = run("--json", "--check", expr, "x=1e-6")
    obj = json.loads(out)
    w = obj["gradcheck"]["worst"]
    check(rc == 0 and obj["gradcheck"]["passed"] is True and close(w["numeric"], deriv, 1e-3)
          and w["step"] < 1e-6, f"--check {expr} at 1e-6: {rc} {out!r}")
    rc, out, _ = run("--check", expr, "x=1e-6")
    check(rc == 0 and "gradcheck: pass" in out and "Richardson" in out, f"--check {expr}: {out!r}")
# No variables: nothing was checked, which is not a pass.
rc, out, _ = run("--check", "2+3")
check(rc == 3 and "gradcheck: FAIL (nothing was checked: the expression has no variables)" in out,
      f"--check without variables: {rc} {out!r}")
rc, out, _ = run("--json", "--check", "2+3")
g = json.loads(out)["gradcheck"]
check(rc == 3 and g["passed"] is False and g["max_error"] is None and "worst" not in g
      and g["message"] == "nothing was checked: the expression has no variables",
      f"--json --check without variables: {out!r}")
# Each variable has its own verdict: y is right, x's kink disagrees.
rc, out, _ = run("--check", "relu(x) + y^2", "x=0", "y=1")
check(rc == 3 and re.search(r"df/dx: tape 0, numeric 0\.5\d* .*: FAIL", out)
      and re.search(r"df/dy: tape 2, numeric 2\.?\d* \(step 1e-06\)", out)
      and "input 0 element []" in out, f"--check per variable: {out!r}")

# ---- --trace: every forward and backward step of f = x*y + sin(x) ---------------------
rc, out, _ = run("--trace", "x*y + sin(x)", "x=2", "y=3")
expected_trace = [
    "forward pass: each op computes its output from values already known",
    "  input     x = 2",
    "  input     y = 3",
    "  forward   n0 = mul(x, y): x*y = 6",
    "  forward   n1 = sin(x): sin(x) = 0.909297",
    "  forward   n2 = add(n0, n1): n0 + n1 = 6.9093",
    "backward pass: g is df/d(node); each step adds g * d(node)/d(input) to the input's g",
    "  seed      g(n2) = df/dn2 = 1",
    "  backward  n2 = add(n0, n1): g = 1; adds to n0: g = 1; adds to n1: g = 1",
    "  backward  n1 = sin(x): g = 1; adds to x: g*cos(x) = -0.416147",
    "  backward  n0 = mul(x, y): g = 1; adds to x: g*y = 3; adds to y: g*x = 2",
    "gradient: each input's adjoint is the sum of the terms the steps added to it",
    "  df/dx = -0.416147 + 3 = 2.58385",
    "  df/dy = 2",
]
lines = out.splitlines()
check(rc == 0 and lines[:len(expected_trace)] == expected_trace,
      "--trace:\n" + "\n".join(lines) + "\nexpected:\n" + "\n".join(expected_trace))
check(lines[len(expected_trace):] == [f"f = {6 + s2!r}", f"df/dx = {3 + c2!r}", "df/dy = 2"],
      f"--trace results: {lines[len(expected_trace):]}")
# a node whose output feeds two ops gets its adjoint as a sum of two terms
rc, out, _ = run("--trace", "exp(x)*exp(x)", "x=0")
check("adds to x: g*exp(x) = 1" in out and "df/dx = 1 + 1 = 2" in out, f"--trace sum: {out!r}")
rc, out, _ = run("--trace", "x", "x=2")
check("df/dx = 1 (f is x itself)" in out, f"--trace of a leaf: {out!r}")

# ---- --json --trace -----------------------------------------------------------------------
# x*y + sin(x) at (2, 3): n0 = xy = 6, n1 = sin 2, n2 = n0 + n1.  Backward:
# the seed g(n2) = 1; add passes 1 to n0 and n1; sin passes cos 2 to x; mul
# passes g*y = 3 to x and g*x = 2 to y, so df/dx = cos 2 + 3, df/dy = 2.
rc, out, err = run("--json", "--trace", "x*y + sin(x)", "x=2", "y=3")
d = json.loads(out) if rc == 0 else {}
steps = d.get("trace", [])
check([s["phase"] for s in steps] == ["forward"] * 3 + ["seed"] + ["backward"] * 3,
      f"--json --trace phases: {[s.get('phase') for s in steps]}")
if len(steps) == 7:
    check(steps[1]["node"] == "n1" and steps[1]["op"] == "sin" and steps[1]["inputs"] == ["x"]
          and close(steps[1]["value"], s2), f"--json --trace forward step: {steps[1]}")
    check(steps[3]["adjoints"] == {"n2": 1}, f"seed step: {steps[3]}")
    check(steps[5]["adds"] == [{"to": "x", "term": "g*cos(x)", "value": c2}]
          or (steps[5]["adds"][0]["term"] == "g*cos(x)" and close(steps[5]["adds"][0]["value"], c2)),
          f"sin step: {steps[5]}")
    last = steps[6]["adjoints"]
    check(close(last["x"], c2 + 3) and last["y"] == 2 and last["n0"] == 1,
          f"adjoints after the last step: {last}")
    check(close(d["grad"][0], c2 + 3) and d["grad"][1] == 2, "--json --trace keeps the gradient")
    # the text of each step is the line --trace prints
    _, text, _ = run("--trace", "x*y + sin(x)", "x=2", "y=3")
    lines = [l.strip() for l in text.splitlines()]
    check(all(s["text"] in lines for s in steps), "--json --trace text equals the --trace lines")

# ---- --descend ----------------------------------------------------------------------------
# f = x^2 + 10 y^2, sgd with lr 0.05: x <- x - 0.05 (2x) = 0.9 x, y <- y - 0.05 (20 y) = 0
rc, out, _ = run("--descend=sgd", "--lr=0.05", "--steps=5", "x^2 + 10*y^2", "x=1", "y=1")
rows = [l.split() for l in out.splitlines()]
check(rc == 0 and rows[0] == ["step", "x", "y", "f"] and len(rows) == 7,
      f"--descend table: {out!r}")
if len(rows) == 7:
    check(close(float(rows[6][1]), 0.9 ** 5) and float(rows[6][2]) == 0
          and close(float(rows[6][3]), 0.9 ** 10), f"--descend sgd last row: {rows[6]}")
# momentum 0.9 on x^2 from 1, lr 0.1: g = 2, b = 2, x = 0.8; g = 1.6,
# b = 0.9*2 + 1.6 = 3.4, x = 0.8 - 0.34 = 0.46
rc, out, _ = run("--json", "--descend=momentum", "--steps=2", "x^2", "x=1")
d = json.loads(out) if rc == 0 else {}
path = d.get("path", [])
check(len(path) == 3 and close(path[1][0], 0.8) and close(path[2][0], 0.46)
      and d.get("diverged") is False and d.get("method") == "momentum",
      f"--descend momentum: {out!r}")
# Adam's first step moves by lr g/(|g| + eps): x = 1 - 0.1 * 2/(2 + 1e-8)
rc, out, _ = run("--json", "--descend=adam", "--steps=1", "x^2", "x=1")
d = json.loads(out) if rc == 0 else {}
check(close(d.get("path", [[0], [0]])[1][0], 1 - 0.1 * 2 / (2 + 1e-8)), f"--descend adam: {out!r}")
# lr 1.5 > 2/lambda = 1 on x^2: x <- -2x, |x| doubles until it overflows
rc, out, _ = run("--json", "--descend=sgd", "--lr=1.5", "--steps=2000", "x^2", "x=1")
d = json.loads(out) if out else {}
check(rc == 1 and d.get("diverged") is True and d["path"][-1][1] is None
      and d["path"][1][0] == -2 and d["path"][2][0] == 4, f"--descend divergence: rc {rc}")

# x^x at 0 has no derivative: the path stops there with the error that the
# plain mode gives (it followed a 0 derivative, exit 0), the JSON closed
rc, out, err = run("--descend=sgd", "--steps=2", "x^x", "x=0")
check(rc == 1 and "adcalc: pow at column 2: base 0 and exponent 0" in err
      and "\n0 0 1" not in out, f"--descend at a point without a derivative: {rc} {out!r} {err!r}")
rc, out, err = run("--json", "--descend=sgd", "--steps=2", "x^x", "x=0")
d = json.loads(out) if out else {}
check(rc == 1 and d.get("path") == [] and d.get("error", "").startswith("pow at column 2"),
      f"--descend --json at a point without a derivative: {rc} {out!r}")

# superscripts in a row are one exponent: x²³ = x^23 (was x^(2^3))
rc, out, _ = run("--json", "x²³", "x=2")
d = json.loads(out) if rc == 0 else {}
check(d.get("value") == 2.0 ** 23 and d.get("grad") == [23 * 2.0 ** 22], f"x²³: {out!r}")

# mixed partials that differ (x^y at (0, 1): rows give 1 and 0): no one
# value, so NaN and a warning instead of their mean 0.5
rc, out, err = run("--json", "--hessian", "x^y", "x=0", "y=1")
d = json.loads(out) if out else {}
check(rc == 1 and d.get("hessian", [[0, 0]])[0][1] is None
      and "the mixed partial derivatives differ" in err, f"--hessian x^y at (0, 1): {out!r} {err!r}")
rc, out, _ = run("--json", "--hessian", "x^y*sin(x*y)", "x=1.3", "y=0.7")
d = json.loads(out) if rc == 0 else {}
h = d.get("hessian", [[0, 1], [2, 0]])
check(rc == 0 and h[0][1] == h[1][0] and h[0][1] is not None, f"--hessian symmetric: {out!r}")

# a variable named like a node (n0): the nodes take other names, so the
# trace never shows the variable and a node under one name
rc, out, _ = run("--trace", "sin(n0)*n0", "n0=1")
check(rc == 0 and "mul(n_0, n0)" in out and "mul(n0, n0)" not in out,
      f"--trace with a variable n0: {out!r}")

# ---- --grid ------------------------------------------------------------------------------
# x^2 + 10 y^2 + z on x in {-1, 0, 1}, y in {0, 1, 2}, z = 0.5 fixed
rc, out, _ = run("--json", "--grid=3", "x^2 + 10*y^2 + z", "x=-1:1", "y=0:2", "z=0.5")
d = json.loads(out) if rc == 0 else {}
check(d.get("variables") == ["x", "y"] and d.get("axes") == [[-1, 0, 1], [0, 1, 2]]
      and d.get("f") == [[1.5, 0.5, 1.5], [11.5, 10.5, 11.5], [41.5, 40.5, 41.5]],
      f"--grid --json: {out!r}")
rc, out, _ = run("--grid=2", "x^2 + y", "x=0:1", "y=2:3")
check(rc == 0 and out == "# x y f\n0 2 2\n1 2 3\n\n0 3 3\n1 3 4\n\n", f"--grid text: {out!r}")

# ---- --dot ----------------------------------------------------------------------------
rc, out, _ = run("--dot", "x*y + sin(x)", "x=2", "y=3")
check(rc == 0 and out.startswith('digraph "adcalc" {') and out.rstrip().endswith("}"),
      f"--dot framing: {out[:80]!r}")
nodes = re.findall(r"^  (\w+) \[shape=(\w+)", out, re.M)
edges = re.findall(r"^  (\w+) -> (\w+)", out, re.M)
check(sorted(s for _, s in nodes) == ["box", "box", "ellipse", "ellipse", "ellipse"],
      f"--dot nodes: {nodes}")
check(len(edges) == 5, f"--dot edges: {edges}")
check('label="x\\n[] float64\\nvalue 2\\ngrad 2.58385"' in out, "--dot leaf x label")
check('label="n1: sin\\n[] float64\\nvalue 0.909297\\ngrad 1"' in out, "--dot sin node label")
check("n0: mul" in out and "n2: add\\nf\\n" in out, "--dot op labels")
# --edge-derivatives: the local derivative on each arrow, by hand at (2, 3):
# d(xy)/dx = y = 3, d(xy)/dy = x = 2, d sin x/dx = cos 2, d(a+b)/da = 1
rc, edges, _ = run("--dot", "--edge-derivatives", "x*y + sin(x)", "x=2", "y=3")
check(rc == 0 and 'L0 -> n0 [label="0: ∂ = 3"];' in edges and 'L1 -> n0 [label="1: ∂ = 2"];' in edges
      and f'L0 -> n1 [label="∂ = {c2:.6g}"];' in edges and 'n0 -> n2 [label="0: ∂ = 1"];' in edges
      and 'n1 -> n2 [label="1: ∂ = 1"];' in edges, f"--edge-derivatives: {edges!r}")
check("∂" not in out, "no local derivatives by default")
rc, _, err = run("--edge-derivatives", "x", "x=1")
check(rc == 2 and err.startswith("adcalc: --edge-derivatives labels the arrows of the --dot graph"),
      f"--edge-derivatives without --dot: {rc} {err!r}")
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "f.dot")
    rc, out2, _ = run(f"--dot={path}", "--hessian", "x*y + sin(x)", "x=2", "y=3")
    check(rc == 0 and out2.startswith("f = ") and "hessian" in out2, "--dot=FILE keeps the output")
    with open(path) as fh:
        check(fh.read() == out, "--dot=FILE writes the same graph")
    dot = os.environ.get("DOT")
    if dot:
        png = os.path.join(tmp, "f.png")
        p = subprocess.run([dot, "-Tpng", path, "-o", png], capture_output=True, text=True)
        check(p.returncode == 0 and p.stderr == "", f"dot -Tpng: {p.stderr!r}")
        with open(png, "rb") as fh:
            check(fh.read(8) == b"\x89PNG\r\n\x1a\n", "dot made a PNG")
    else:
        print("skip: DOT not set, --dot output not rendered")

# ---- the notation of the guide and of textbooks ------------------------------------
# · ⋅ × are *, ÷ is /, − (U+2212) is -, ² ³ are ^2 ^3, π is pi: the same
# results as the ASCII forms.
for uni, ascii_, point in (("x·y − x²", "x*y - x^2", ["x=2", "y=3"]),
                           ("x⋅y×2 ÷ y³", "x*y*2 / y^3", ["x=2", "y=3"]),
                           ("π·x²", "pi*x^2", ["x=2"]),
                           ("−x²", "-x^2", ["x=3"])):
    rc1, out1, err1 = run("--json", "--hessian", uni, *point)
    rc2, out2, _ = run("--json", "--hessian", ascii_, *point)
    check(rc1 == 0 and err1 == "" and out1 == out2, f"{uni!r} reads as {ascii_!r}: {out1!r} {out2!r}")
# x·y − x² at (2, 3): 6 - 4 = 2, grad (y - 2x, x) = (-1, 2)
obj = json.loads(run("--json", "x·y − x²", "x=2", "y=3")[1])
check(obj["value"] == 2 and obj["grad"] == [-1, 2], f"x·y − x²: {obj}")

# ---- one "adcalc:" prefix per message ---------------------------------------------
for args in (["--dot=/nonexistent-dir/f.dot", "x", "x=1"], ["x^x", "x=0"], ["sin(x", "x=1"],
             ["x", "x=abc"], ["--bogus"], ["log(x)", "x=-1"], ["1/(1+exp(-x))", "x=-800"]):
    rc, out, err = run(*args)
    lines = [l for l in err.splitlines() if l.startswith("adcalc")]
    check(lines and all(l.count("adcalc:") == 1 for l in lines), f"{args}: prefixes in {err!r}")
rc, out, err = run("--dot=/nonexistent-dir/f.dot", "x", "x=1")
check(rc == 4 and err == "adcalc: cannot open '/nonexistent-dir/f.dot' for writing\n",
      f"--dot to a missing directory: {rc} {err!r}")

# ---- flat sums and products of thousands of terms -------------------------------------
# x + x + ... (n terms) at x = 1.5 is 1.5 n with derivative n; the chain
# nests to the left and is walked by a loop, so its length is not a depth
for n in (5001, 20000):
    rc, out, err = run("--json", "+".join(["x"] * n), "x=1.5")
    obj = json.loads(out) if rc == 0 else {}
    check(rc == 0 and obj.get("value") == 1.5 * n and obj.get("grad") == [n],
          f"sum of {n} terms: {rc} {err[:200]!r}")
# x*x*...*x (5001 factors) at x = 1: 1, derivative 5001; a - b - c ...: 1 - 5000
rc, out, err = run("--json", "*".join(["x"] * 5001), "x=1")
check(rc == 0 and json.loads(out)["grad"] == [5001], f"product of 5001 factors: {err[:200]!r}")
rc, out, err = run("--json", "-".join(["x"] * 5001), "x=1")
check(rc == 0 and json.loads(out)["value"] == -4999 and json.loads(out)["grad"] == [-4999],
      f"difference of 5001 terms: {err[:200]!r}")
# an unbound variable deep in a long chain: the leftmost is named
rc, out, err = run("+".join(["x"] * 3000) + "+y+z", "x=1")
check(rc == 2 and err.startswith("adcalc: variable 'y' has no value"), f"unbound in a chain: {err[:100]!r}")

# ---- an expression that starts with '-' ----------------------------------------------
for args, value in ((["--", "-x", "x=2"], -2), (["--", "--x", "x=2"], 2), (["--", "-h", "h=2"], -2),
                    (["--json", "--", "-x^2", "x=3"], -9), (["-x", "x=2"], -2)):
    rc, out, err = run("--json", *args) if "--json" not in args else run(*args)
    obj = json.loads(out) if rc == 0 else {}
    check(rc == 0 and obj.get("value") == value, f"{args}: {rc} {out!r} {err!r}")

# ---- powers at 0 ------------------------------------------------------------------------
# 0^0 = 1 (C's pow, PyTorch); x^0 is 1 everywhere, so its derivative at 0 is 0
rc, out, _ = run("--json", "0^0")
check(rc == 0 and json.loads(out)["value"] == 1, f"0^0: {out!r}")
rc, out, _ = run("--json", "--hessian", "x^0", "x=0")
check(rc == 0 and json.loads(out)["value"] == 1 and json.loads(out)["grad"] == [0], f"x^0 at 0: {out!r}")
# x^y at x = 0, y = 2: 0^y = 0 for y > 0, so df/dy = 0; df/dx = y x^(y-1) = 0
rc, out, _ = run("--json", "x^y", "x=0", "y=2")
check(rc == 0 and json.loads(out)["grad"] == [0, 0], f"x^y at (0, 2): {out!r}")
# x^y at (0, 0) and x^x at 0: 0^y is 0 for y > 0, 1 at 0, inf below, so
# there is no derivative in y; a clear domain error, exit status 1
for args in (["x^x", "x=0"], ["x^y", "x=0", "y=0"], ["pow(x, y)", "x=0", "y=0"], ["0^y", "y=0"]):
    rc, out, err = run(*args)
    check(rc == 1 and out == "" and err.startswith("adcalc: pow at column ")
          and "base 0 and exponent 0" in err and "from the right its slope is -inf" in err,
          f"{args}: {rc} {out!r} {err!r}")
# near 0 from the right, x^x is fine: (x^x)' = x^x (log x + 1)
x = 1e-3
rc, out, _ = run("--json", "x^x", f"x={x}")
check(rc == 0 and close(json.loads(out)["grad"][0], x ** x * (math.log(x) + 1)), f"x^x at 1e-3: {out!r}")

# ---- the sigmoid written out, at -800 ------------------------------------------------
# exp(800) overflows to inf: f = 1/(1+inf) = 0 is right, but the chain rule
# multiplies exp's inf by g = -1/(1+inf)^2 = 0: nan.  The warnings name
# the overflow, and sigmoid(x) is stable (computed through exp(-|x|)).
rc, out, err = run("1/(1+exp(-x))", "x=-800")
check(rc == 1 and "f = 0\n" in out and "adcalc: warning: exp overflowed: exp(800) is inf" in err
      and "sigmoid(x) for 1/(1+exp(-x))" in err
      and "the derivative of exp is nan (argument 800): its value inf overflowed in the forward "
          "pass, and the chain rule multiplied it by g = 0" in err, f"sigmoid by hand at -800: {rc} {err!r}")
rc, out, err = run("--json", "sigmoid(x)", "x=-800")
check(rc == 0 and err == "" and json.loads(out) == {"value": 0, "grad": [0], "variables": ["x"]},
      f"sigmoid(-800): {out!r} {err!r}")

# ---- the Hessian is exactly symmetric ---------------------------------------------------
# The two mixed partials come from two backward passes and can differ in the
# last bit (they did for these); adcalc prints their mean.
for expr, point in (("sin(x*y)*exp(x/y)", ["x=1.3", "y=0.7"]), ("x^y", ["x=1.3", "y=0.7"]),
                    ("sigmoid(x*y)*x + z*x*y^2", ["x=1.3", "y=0.7", "z=-0.4"])):
    h = json.loads(run("--json", "--hessian", expr, *point)[1])["hessian"]
    check(all(h[i][j] == h[j][i] for i in range(len(h)) for j in range(len(h))),
          f"{expr}: hessian not symmetric: {h}")
# and still right: d2(x^y)/dxdy = x^(y-1) (1 + y log x)
h = json.loads(run("--json", "--hessian", "x^y", "x=1.3", "y=0.7")[1])["hessian"]
check(close(h[0][1], 1.3 ** -0.3 * (1 + 0.7 * math.log(1.3))), f"x^y mixed partial: {h}")

# ---- --trace --hessian: the second backward passes -----------------------------------
rc, out, _ = run("--trace", "--hessian", "x*y + sin(x)", "x=2", "y=3")
lines = out.splitlines()
i = lines.index("recorded by the backward pass (AD_CREATE_GRAPH): its chain-rule steps are ops "
                "too, so each df/dx_i is a node of the tape") if rc == 0 else 0
expected_second = [
    "  recorded  n3 = cos(x): cos(x) = -0.416147",
    "  recorded  n4 = mul(1, n3): 1*n3 = -0.416147",
    "  recorded  n5 = mul(1, y): 1*y = 3",
    "  recorded  n6 = mul(1, x): 1*x = 2",
    "  recorded  n7 = add(n4, n5): n4 + n5 = 2.58385",
    "second backward passes: a backward pass from df/dx_i gives row i of the hessian, d2f/dx_i dx_j",
    "  row x: from df/dx = n7 back to the variables",
    "  seed      g(n7) = df/dn7 = 1",
    "  backward  n7 = add(n4, n5): g = 1; adds to n4: g = 1; adds to n5: g = 1",
    "  backward  n5 = mul(1, y): g = 1; adds to y: g*1 = 1",
    "  backward  n4 = mul(1, n3): g = 1; adds to n3: g*1 = 1",
    "  backward  n3 = cos(x): g = 1; adds to x: -g*sin(x) = -0.909297",
    "  row x of the hessian: the sums of the terms added to each input",
    "  d2f/dx dx = -0.909297",
    "  d2f/dx dy = 1",
    "  row y: from df/dy = n6 back to the variables",
    "  seed      g(n6) = df/dn6 = 1",
    "  backward  n6 = mul(1, x): g = 1; adds to x: g*1 = 1",
    "  row y of the hessian: the sums of the terms added to each input",
    "  d2f/dy dx = 1",
    "  d2f/dy dy = 0 (no path leads from y to df/dy)",
]
# d2/dx2 (xy + sin x) = -sin 2 = -0.909297, d2/dxdy = 1, d2/dy2 = 0
check(rc == 0 and lines[i + 1:i + 1 + len(expected_second)] == expected_second,
      "--trace --hessian:\n" + "\n".join(lines))

print(f"{count - len(failures)}/{count} checks passed")
sys.exit(1 if failures else 0)
