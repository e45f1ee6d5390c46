#!/usr/bin/env bash
# Runs kiln's whole test suite: installs the Debian packages the tests need when they are
# missing, checks formatting and lints, builds a static kiln for the container tests, runs every
# test of the workspace, then a short fuzz pass
# (tests/fuzz/run.sh: each cargo-fuzz target replays its corpus and fuzzes ~20 s more).
# `.ci/run` calls exactly this script; any failure exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tools the tests drive: busybox-static (base images), skopeo and umoci (read what kiln writes),
# docker-registry (the real registry server the registry tests push to and pull from), podman
# and runc (load and run what kiln builds and pushes), buildah (the differential suite builds
# every case with it too and compares), binutils (readelf checks busybox is static), uidmap
# (newuidmap/newgidmap: the rootless tests run kiln as a user with subordinate ids), libcap2-bin
# (setcap: the container tests give newuidmap/newgidmap file capabilities in kiln's container),
# openssh-client (ssh-agent, ssh-add, ssh-keygen: RUN --mount=type=ssh), tmux (a real terminal
# for the live `--progress=tty` view).
packages=(busybox-static skopeo umoci docker-registry podman runc buildah binutils uidmap libcap2-bin
    openssh-client tmux)
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# A static kiln (glibc, crt-static) for kiln's own FROM scratch image, which the container tests
# build with examples/kubernetes/scratch.Dockerfile and run. Unoptimised and without debug info:
# the test needs it to work, not to be fast. `--target` keeps it apart from the test build.
RUSTFLAGS='-C target-feature=+crt-static' CARGO_PROFILE_DEV_DEBUG=0 \
    cargo build --locked --bin kiln --target x86_64-unknown-linux-gnu
export KILN_STATIC_BIN="$PWD/target/x86_64-unknown-linux-gnu/debug/kiln"
cargo test --workspace --locked
bash tests/fuzz/run.sh
