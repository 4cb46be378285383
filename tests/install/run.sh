#!/usr/bin/env bash
# tests/install/run.sh BUILD_DIR - does the installed library work for a user?
#
# Installs BUILD_DIR into a scratch DESTDIR and, against that install:
#   1. checks autodiff.pc and autodiff_nn.pc against what the shared
#      libraries were really linked with;
#   2. runs every command line that README.md and docs/*.md give for
#      building a program against the library, verbatim, with each program
#      of the same document (tests/guide_snippets.py --commands; its
#      docstring has the rules): `prefix` is the DESTDIR'd prefix, and the
#      documents' own `export PKG_CONFIG_PATH=...` and `LD_LIBRARY_PATH=...`
#      lines for a prefix other than /usr/local are the environment.  Each
#      executable is run; the static ones must not need libautodiff*.so, the
#      shared ones must find it in the prefix;
#   3. builds tests/install/consumer.c with -std=c11 -pedantic -Werror (the
#      public headers are clean) against the install: shared, then static
#      with the shared objects removed, where `pkg-config --static` must
#      supply every private dependency (libm, the OpenMP runtime, OpenBLAS).
#
# The .pc files are relocatable (-Dpkgconfig.relocatable=true, meson.build's
# default): their prefix is found from where they are, so the DESTDIR tree is
# used exactly as an install into another prefix would be.
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
src=$(cd "$here/../.." && pwd)
cc=${CC:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tmp=$(cd "$tmp" && pwd -P)  # the prefix is compared with physical paths
dest=$tmp/root

meson install -C "$build" --destdir "$dest" --no-rebuild --quiet >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; fail "meson install failed"; }

pcfile=$(find "$dest" -path '*/pkgconfig/autodiff.pc' | head -n 1)
[ -n "$pcfile" ] || fail "no pkgconfig/autodiff.pc under $dest"
pcdir=$(dirname "$pcfile")
[ -f "$pcdir/autodiff_nn.pc" ] || fail "autodiff_nn.pc not next to autodiff.pc"
[ -f "$pcdir/../libautodiff.a" ] || fail "libautodiff.a not next to pkgconfig/"
libdir=$(cd "$pcdir/.." && pwd)
ls "$libdir"/libautodiff.so* "$libdir"/libautodiff_nn.so* "$libdir"/libautodiff_nn.a >/dev/null 2>&1 ||
    fail "libautodiff.so, libautodiff_nn.so or libautodiff_nn.a missing in $libdir"
# The README says where the .pc files land.
case $pcdir in */lib/x86_64-linux-gnu/pkgconfig) ;;
    *) [ "$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null)" != x86_64-linux-gnu ] ||
           fail "the .pc files are in $pcdir, not lib/x86_64-linux-gnu/pkgconfig as README.md says" ;;
esac
[ -f "$(find "$dest" -path '*/include/autodiff/autodiff.h' | head -n 1)" ] ||
    fail "autodiff/autodiff.h not installed"

# ---- 1. the .pc must describe what the shared library was really linked with.
field()
{
    sed -n "s/^$1: *//p" "${2:-$pcfile}"
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

# autodiff_nn.pc: autodiff for its users, zlib (and the rest) for static links.
nnpc=$pcdir/autodiff_nn.pc
echo "autodiff_nn.pc:"
sed 's/^/    /' "$nnpc"
# shellcheck disable=SC2016
[ "$(field Libs "$nnpc")" = '-L${libdir} -lautodiff_nn' ] || fail "autodiff_nn.pc Libs: '$(field Libs "$nnpc")'"
[[ " $(field Requires "$nnpc" | tr , ' ') " == *" autodiff "* ]] || fail "autodiff_nn.pc does not require autodiff"
nn_needed=$(readelf -d "$libdir/libautodiff_nn.so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
case " $nn_needed " in *" libz.so"*)
    [[ " $(field Requires.private "$nnpc" | tr , ' ') " == *" zlib "* ||
       " $(field Libs.private "$nnpc") " == *" -lz "* ]] ||
        fail "libautodiff_nn.so needs libz; autodiff_nn.pc names no zlib for static links" ;;
esac

# ---- the .pc files must be relocatable, so that the DESTDIR tree is a
# usable install of its own.
# shellcheck disable=SC2016
grep -q '^prefix=${pcfiledir}/' "$pcfile" ||
    fail "autodiff.pc is not relocatable ($(grep '^prefix=' "$pcfile")); configure $build with -Dpkgconfig.relocatable=true (a new build directory has it)"
prefix=$(PKG_CONFIG_PATH=$pcdir pkg-config --variable=prefix autodiff)
prefix=$(cd "$prefix" && pwd -P)
[[ $prefix == "$dest"/* ]] || fail "the prefix of the installed autodiff.pc is $prefix, outside $dest"

# ---- 2. the documents' command lines, as a user types them.
echo "the documents' compile lines, with prefix=$prefix:"
# docs/distributed.md's program needs libautodiff_nn_mpi, built only when
# MPI was found (-Dmpi).
docs=(README.md docs/*.md)
if [ ! -f "$pcdir/autodiff_nn_mpi.pc" ]; then
    echo "no autodiff_nn_mpi.pc (built without MPI): docs/distributed.md's lines not checked"
    docs=(README.md $(cd "$src" && ls docs/*.md | grep -v '^docs/distributed\.md$'))
fi
(cd "$src" && python3 tests/guide_snippets.py --commands -v --prefix "$prefix" \
    --build-root "$build" --source-root "$src" \
    --require README.md --require docs/guide.md --require docs/guide.zh.md \
    "${docs[@]}") ||
    fail "a command line of the documents does not work (see above)"

# ---- 3. consumer.c, with the strictest flags.
export PKG_CONFIG_PATH=$pcdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}

# The public headers must be clean for a strict C11 consumer.
cflags=(-std=c11 -pedantic -Wall -Wextra -Werror -O1)

# ---- 3a. shared
read -r -a pc_shared <<<"$(pkg-config --cflags --libs autodiff)"
echo "shared: $cc ${pc_shared[*]}"
"$cc" "${cflags[@]}" "$here/consumer.c" -o "$tmp/consumer-shared" "${pc_shared[@]}" -lm ||
    fail "shared link"
readelf -d "$tmp/consumer-shared" | grep -q 'NEEDED.*libautodiff\.so' ||
    fail "the shared consumer does not use libautodiff.so"
resolved=$(LD_LIBRARY_PATH=$libdir ldd "$tmp/consumer-shared" | sed -n 's/.*libautodiff\.so[^ ]* => \([^ ]*\).*/\1/p')
[[ $resolved == "$libdir"/* ]] || fail "libautodiff.so resolves to '$resolved', not into $libdir"
LD_LIBRARY_PATH=$libdir "$tmp/consumer-shared" || fail "shared consumer exited with $?"

# ---- 3b. static: only libautodiff.a is left to link against.
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
