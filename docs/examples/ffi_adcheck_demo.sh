#!/bin/sh
# docs/examples/ffi_adcheck_demo.sh [ADCHECK] - adcheck on a library of yours.
#
# Compiles a small shared library whose gradient function has a classic
# bug (the chain rule's inner derivative forgotten in one component), then
# runs adcheck twice: on the correct gradient (exit 0) and on the buggy one
# (exit 1, the report marking df/dx1).  docs/ffi.md shows the output.
#
#   sh docs/examples/ffi_adcheck_demo.sh build/tools/adcheck
#
# CC (default cc) compiles the library.  Exits 0 when adcheck behaved as
# described, 1 otherwise.
set -eu
adcheck=${1:-adcheck}
cc=${CC:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cat >"$tmp/mylib.c" <<'C'
#include <math.h>
/* f(x, y) = x^2 sin(3y) */
double f(double x, double y) { return x * x * sin(3 * y); }
void f_grad(double x, double y, double *g)
{
    g[0] = 2 * x * sin(3 * y);
    g[1] = 3 * x * x * cos(3 * y);
}
void f_grad_buggy(double x, double y, double *g)
{
    g[0] = 2 * x * sin(3 * y);
    g[1] = x * x * cos(3 * y); /* forgot the 3 from d(3y)/dy */
}
C
$cc -shared -fPIC -o "$tmp/libmylib.so" "$tmp/mylib.c" -lm

echo "== the correct gradient"
"$adcheck" --grad f_grad --random 3 "$tmp/libmylib.so" f 'double f(double x, double y)'

echo
echo "== the buggy one"
status=0
"$adcheck" --grad f_grad_buggy --at 0.5,0.2 "$tmp/libmylib.so" f 'double f(double x, double y)' \
    >"$tmp/out" || status=$?
cat "$tmp/out"
[ "$status" -eq 1 ] || { echo "expected exit status 1, got $status"; exit 1; }
grep -q '^  df/dx1 .*<-- FAIL' "$tmp/out" || { echo "df/dx1 not marked"; exit 1; }
if grep -q '^  df/dx0 .*<-- FAIL' "$tmp/out"; then echo "df/dx0 wrongly marked"; exit 1; fi
echo
echo "adcheck caught the bug in df/dx1"
