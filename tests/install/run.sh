#!/usr/bin/env bash
# tests/install/run.sh BUILD_DIR - does the installed library work for a user?
#
# Installs BUILD_DIR into a scratch DESTDIR, checks the generated autodiff.pc,
# then builds tests/install/consumer.c against the installed tree the way
# another project would, with `pkg-config --cflags --libs autodiff`:
#   1. shared: linked to libautodiff.so, run with LD_LIBRARY_PATH into DESTDIR;
#   2. static: with the shared objects removed from DESTDIR, linked with
#      `pkg-config --static`, which must supply every private dependency
#      (libm, the OpenMP runtime, OpenBLAS) for the link to succeed.
#
# The installed .pc names its final prefix (/usr/local by default), not the
# DESTDIR.  PKG_CONFIG_SYSROOT_DIR would prefix the DESTDIR onto every path,
# including those of system packages we require (openblas.pc), which breaks
# them; so the test reads a copy of autodiff.pc with only its prefix moved.
#
# Prints "install test: ok" and exits 0 on success.
set -euo pipefail

fail()
{
    echo "install test: FAIL: $*" >&2
    exit 1
}

[ $# -eq 1 ] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cc=${CC:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dest=$tmp/root

meson install -C "$build" --destdir "$dest" --no-rebuild --quiet >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; fail "meson install failed"; }

pcfile=$(find "$dest" -path '*/pkgconfig/autodiff.pc' | head -n 1)
[ -n "$pcfile" ] || fail "no pkgconfig/autodiff.pc under $dest"
[ -f "$(dirname "$pcfile")/../libautodiff.a" ] || fail "libautodiff.a not next to pkgconfig/"
libdir=$(cd "$(dirname "$pcfile")/.." && pwd)
ls "$libdir"/libautodiff.so* >/dev/null 2>&1 || fail "no libautodiff.so in $libdir"
[ -f "$(find "$dest" -path '*/include/autodiff/autodiff.h' | head -n 1)" ] ||
    fail "autodiff/autodiff.h not installed"

# ---- the .pc must describe what the shared library was really linked with.
field()
{
    sed -n "s/^$1: *//p" "$pcfile"
}
echo "autodiff.pc:"
sed 's/^/    /' "$pcfile"
# shellcheck disable=SC2016 # the .pc's own ${variables}, compared literally
[ "$(field Cflags)" = '-I${includedir}' ] || fail "Cflags: '$(field Cflags)'"
# shellcheck disable=SC2016
[ "$(field Libs)" = '-L${libdir} -lautodiff' ] || fail "Libs: '$(field Libs)'"
needed=$(readelf -d "$libdir/libautodiff.so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
private=" $(field Libs.private) "
requires=" $(field Requires.private) "
case " $needed " in *" libm.so"*)
    [[ $private == *" -lm "* ]] || fail "libautodiff.so needs libm; Libs.private lacks -lm" ;;
esac
case " $needed " in *" libgomp.so"*)
    [[ $private == *" -lgomp "* ]] || fail "libautodiff.so needs libgomp; Libs.private lacks -lgomp" ;;
esac
case " $needed " in *" libomp.so"*)
    [[ $private == *" -lomp "* || $private == *" -lomp5 "* ]] ||
        fail "libautodiff.so needs libomp; Libs.private lacks -lomp" ;;
esac
case " $needed " in *" libopenblas.so"* | *" libcblas.so"*)
    [[ $requires == *" openblas "* || $requires == *" cblas "* ]] ||
        fail "libautodiff.so needs a BLAS; Requires.private does not name it" ;;
esac
[[ $private != *"-fopenmp"* ]] || fail "Libs.private has -fopenmp (compiler-specific); want the runtime library"

# ---- a copy of the .pc whose prefix is the DESTDIR'd one.
prefix=$(sed -n 's/^prefix=//p' "$pcfile")
[ -n "$prefix" ] || fail "autodiff.pc has no prefix= line"
mkdir "$tmp/pc"
sed "s|^prefix=.*|prefix=$dest$prefix|" "$pcfile" >"$tmp/pc/autodiff.pc"
export PKG_CONFIG_PATH=$tmp/pc${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}

# The public headers must be clean for a strict C11 consumer.
cflags=(-std=c11 -pedantic -Wall -Wextra -Werror -O1)

# ---- 1. shared
read -r -a pc_shared <<<"$(pkg-config --cflags --libs autodiff)"
echo "shared: $cc ${pc_shared[*]}"
"$cc" "${cflags[@]}" "$here/consumer.c" -o "$tmp/consumer-shared" "${pc_shared[@]}" -lm ||
    fail "shared link"
readelf -d "$tmp/consumer-shared" | grep -q 'NEEDED.*libautodiff\.so' ||
    fail "the shared consumer does not use libautodiff.so"
resolved=$(LD_LIBRARY_PATH=$libdir ldd "$tmp/consumer-shared" | sed -n 's/.*libautodiff\.so[^ ]* => \([^ ]*\).*/\1/p')
[[ $resolved == "$libdir"/* ]] || fail "libautodiff.so resolves to '$resolved', not into $libdir"
LD_LIBRARY_PATH=$libdir "$tmp/consumer-shared" || fail "shared consumer exited with $?"

# ---- 2. static: only libautodiff.a is left to link against.
rm -f "$libdir"/libautodiff.so*
read -r -a pc_static <<<"$(pkg-config --static --cflags --libs autodiff)"
echo "static: $cc ${pc_static[*]}"
"$cc" "${cflags[@]}" "$here/consumer.c" -o "$tmp/consumer-static" "${pc_static[@]}" ||
    fail "static link (are Libs.private / Requires.private complete?)"
if readelf -d "$tmp/consumer-static" | grep -q 'NEEDED.*libautodiff'; then
    fail "the static consumer still needs libautodiff.so"
fi
"$tmp/consumer-static" || fail "static consumer exited with $?"

echo "install test: ok"
