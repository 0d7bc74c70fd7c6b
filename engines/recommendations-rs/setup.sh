#!/usr/bin/env bash
# Builds the Rust recommendation engine (`make setup` calls this), offline, from Debian's
# packaged crates (/usr/share/cargo/registry, see /work/main/.cargo/config.toml).
#
# Where the crates or a toolchain cannot be had (not root, not Debian), it says so in one line
# and exits 0: the Python engine still works. A build that fails with everything present is a
# real error and exits non-zero.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
binary="$here/target/release/archlab-recommendations"

# The crates Cargo.lock names come with these packages (and their dependencies);
# libsqlite3-dev is the system SQLite that libsqlite3-sys links.
packages=(
    librust-libc-dev
    librust-rmp-serde-dev
    librust-rusqlite-dev
    librust-serde-dev
    librust-serde-derive-dev
    librust-serde-json-dev
    librust-tiny-http-dev
    libsqlite3-dev
)

is_root() { [ "$(id -u)" -eq 0 ]; }

installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

updated=no
apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends "$@"; then
        if [ "$updated" = yes ]; then
            return 1
        fi
        updated=yes
        apt-get update
        apt-get install -y --no-install-recommends "$@"
    fi
}

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "recommendations-rs: not a Debian system (no dpkg-query), so no packaged Rust crates; the Python engine will be used"
    exit 0
fi

missing=()
for package in "${packages[@]}"; do
    installed "$package" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if ! is_root; then
        echo "recommendations-rs: to build the Rust engine run 'sudo apt-get install ${missing[*]}'; until then the Python engine will be used"
        exit 0
    fi
    echo "recommendations-rs: installing ${missing[*]}"
    if ! apt_install "${missing[@]}"; then
        echo "recommendations-rs: apt-get could not install ${missing[*]}; the Python engine will be used"
        exit 0
    fi
fi

cargo=""
if command -v cargo >/dev/null 2>&1; then
    cargo="$(command -v cargo)"
elif [ -x "${HOME:-/nonexistent}/.cargo/bin/cargo" ]; then
    cargo="$HOME/.cargo/bin/cargo"
elif is_root; then
    echo "recommendations-rs: no cargo found; installing Debian's cargo"
    if apt_install cargo && [ -x /usr/bin/cargo ]; then
        cargo=/usr/bin/cargo
    fi
fi
if [ -z "$cargo" ]; then
    if is_root; then
        echo "recommendations-rs: no cargo could be installed; the Python engine will be used"
    else
        echo "recommendations-rs: no cargo found (run 'sudo apt-get install cargo' to build the Rust engine); the Python engine will be used"
    fi
    exit 0
fi

echo "building the Rust recommendation engine (offline, Debian crates)…"
started=$(date +%s.%N)
(cd "$here" && "$cargo" build --release --locked)
finished=$(date +%s.%N)
seconds=$(awk -v a="$started" -v b="$finished" 'BEGIN { printf "%.1f", b - a }')
echo "recommendations-rs: built in $seconds s with $("$cargo" --version): $binary"
