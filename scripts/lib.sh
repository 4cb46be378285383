# shellcheck shell=bash
# scripts/lib.sh - shared by scripts/check and scripts/demo.  Sourced, not run.
#
# Provides:
#   ad_cd_root       cd to the repository root, whatever the caller's cwd
#   ad_install_web_deps  emscripten and chromium, and the page's npm
#                    packages (web/node_modules), for the playground page
#   ad_install_deps  install the Debian packages the build and tests need,
#                    calling apt-get only when one of them is missing
#   ad_install_demo_deps  the same, plus what scripts/demo needs
#   ad_setup DIR ARGS...  meson setup DIR (or --reconfigure when it exists)

# Everything the library, its tests, the sanitizer build and the install
# test use.  gcc and clang must both build the library warning-free.
AD_DEPS=(
    build-essential   # gcc, make, libc headers
    clang
    libclang-rt-dev   # clang's sanitizer runtimes and libFuzzer: the sanitizer
                      # stage (build-san/) and scripts/fuzz build with clang
                      # (clang only recommends it, and apt-get here installs no
                      # recommendations)
    meson
    ninja-build
    pkg-config        # the install test's consumer finds us through it
    check             # the unit-test framework (libcheck)
    libffi-dev
    zlib1g-dev
    libopenblas-dev   # optional CBLAS matrix products (-Dblas=auto)
    gfortran          # libgfortran.so: openblas.pc's Libs.private names
                      # -lgfortran, so static links (the install test) need it
    valgrind
    python3-numpy     # reference values for some tests
    python3-torch     # docs/examples/torch_to_c.py: PyTorch weights run by the
                      # C example (skipped without it)
    graphviz          # dot: renders the DOT export in tests and the guide's
                      # graph pictures (docs/figures, ninja -C build figures)
    gnuplot-nox       # the guide's plots (docs/figures) and the demo's curve
    libopenmpi-dev    # MPI for libautodiff_nn_mpi (-Dmpi=auto), data-parallel
    openmpi-bin       # training; mpirun runs its test (tests/test_dist.py)
    fortunes-min      # the text the charlm test trains on (it falls back to
                      # a generated text without it)
)

# What scripts/demo needs on top: the data set it trains on (gnuplot, for
# the picture of the loss curve, is in AD_DEPS).  Not needed to build or
# test (the Fashion-MNIST test falls back to synthetic data and skips what
# needs the real files).
AD_DEMO_DEPS=(
    dataset-fashion-mnist   # /usr/share/datasets/fashion-mnist
    fortunes                # the full fortunes text for docs/examples/charlm
)

# The playground page (web/): emcc compiles adcalc to WebAssembly, and the
# browser test runs the page in Debian's chromium.  scripts/check installs
# them; without them (or without the npm registry) the page and its test
# are skipped with a message.
AD_WEB_DEPS=(
    emscripten        # emcc (with node-acorn, binaryen, clang)
    chromium          # the browser test drives it through playwright-core
)

ad_cd_root()
{
    cd "$(dirname "${BASH_SOURCE[0]}")/.." || return 1
}

# A package counts as present only when dpkg says it is fully installed;
# "deinstall ok config-files" (removed, configuration left) does not.
ad__pkg_installed()
{
    dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed$'
}

ad_install_deps()
{
    ad__install "${AD_DEPS[@]}"
}

ad_install_demo_deps()
{
    ad__install "${AD_DEPS[@]}" "${AD_DEMO_DEPS[@]}"
}

# The page's two npm packages, pinned in web/package-lock.json: the graph
# layout (@viz-js/viz, Graphviz in WebAssembly) and the browser test's
# driver (playwright-core, which uses the system chromium, no download).
# A failure (no registry) is reported, not fatal: the page is then skipped.
ad_install_web_deps()
{
    ad__install "${AD_WEB_DEPS[@]}" || {
        echo "note: could not install ${AD_WEB_DEPS[*]}; the playground page is skipped" >&2
        return 0
    }
    # npm ci starts from an empty node_modules; only when the lock changed.
    if [ -f web/node_modules/.package-lock.json ] &&
        ! [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        echo "note: npm not found; the playground page (web/) is skipped" >&2
        return 0
    fi
    (cd web && npm ci --no-audit --no-fund --loglevel=error) ||
        echo "note: npm ci in web/ failed; the playground page is skipped" >&2
}

# ad__install PKG...: apt-get install those of PKG that are missing.
ad__install()
{
    local missing=() pkg sudo=()
    if ! command -v dpkg >/dev/null 2>&1; then
        echo "error: dpkg not found; this script installs its dependencies with" \
             "apt-get on Debian/Ubuntu. Install by hand: $*" >&2
        return 1
    fi
    for pkg in "$@"; do
        ad__pkg_installed "$pkg" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0

    if [ "$(id -u)" -ne 0 ]; then
        # sudo may ask for a password only when someone can type it.
        if command -v sudo >/dev/null 2>&1 && { sudo -n true 2>/dev/null || [ -t 0 ]; }; then
            sudo=(sudo)
        else
            echo "error: missing packages: ${missing[*]} -- run this as root, or with" \
                 "sudo available, or install them first: apt-get install ${missing[*]}" >&2
            return 1
        fi
    fi
    echo "Installing missing packages: ${missing[*]}"
    # Another apt (unattended upgrades, a second run of these scripts) may
    # hold the package locks for a while: install waits for dpkg's lock
    # (DPkg::Lock::Timeout), and update, which that option does not cover,
    # is retried while the error is a lock (up to 10 minutes).
    local tries=0 err
    err=$(mktemp) || return 1
    until "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q 2>"$err"; do
        cat "$err" >&2
        if ! grep -q "Could not get lock" "$err" || [ $tries -ge 60 ]; then
            rm -f "$err"
            return 1
        fi
        tries=$((tries + 1))
        echo "apt-get update: another apt holds the lock; retrying in 10 s" >&2
        sleep 10
    done
    rm -f "$err"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}"
}

# meson setup, reusing an existing build directory (its options are then
# updated to ARGS) so repeated runs only rebuild what changed.
# ad_compiler DIR: the C compiler meson configured DIR with ("gcc", "clang"),
# empty when DIR is not configured.
ad_compiler()
{
    sed -n 's/^C compiler for the host machine: \([^ ]*\).*/\1/p' \
        "$1/meson-logs/meson-log.txt" 2>/dev/null | tail -1
}

ad_setup()
{
    local dir=$1
    shift
    if [ -f "$dir/meson-private/coredata.dat" ]; then
        meson setup --reconfigure "$dir" "$@"
    else
        meson setup "$dir" "$@"
    fi
}
