# shellcheck shell=bash
# scripts/lib.sh - shared by scripts/check and scripts/demo.  Sourced, not run.
#
# Provides:
#   ad_cd_root       cd to the repository root, whatever the caller's cwd
#   ad_install_deps  install the Debian packages the build and tests need,
#                    calling apt-get only when one of them is missing
#   ad_install_demo_deps  the same, plus what scripts/demo needs
#   ad_setup DIR ARGS...  meson setup DIR (or --reconfigure when it exists)

# Everything the library, its tests, the sanitizer build and the install
# test use.  gcc and clang must both build the library warning-free.
AD_DEPS=(
    build-essential   # gcc, make, libc headers
    clang
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
    fortunes-min      # the text the charlm test trains on (it falls back to
                      # a generated text without it)
)

# What scripts/demo needs on top: the data set it trains on and gnuplot for
# the picture of the loss curve.  Not needed to build or test (the
# Fashion-MNIST test falls back to synthetic data and skips what needs the
# real files).
AD_DEMO_DEPS=(
    dataset-fashion-mnist   # /usr/share/datasets/fashion-mnist
    gnuplot-nox             # the PNG next to the curve's CSV
    fortunes                # the full fortunes text for docs/examples/charlm
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
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# meson setup, reusing an existing build directory (its options are then
# updated to ARGS) so repeated runs only rebuild what changed.
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
