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
# openssh-client (ssh-agent, ssh-add, ssh-keygen: RUN --mount=type=ssh), qemu-user-static and
# binfmt-support (RUN for arm64 and arm under QEMU user emulation: the multi-platform tests), tmux
# (a real terminal for the live `--progress=tty` view).
packages=(busybox-static skopeo umoci docker-registry podman runc buildah binutils uidmap libcap2-bin
    openssh-client qemu-user-static binfmt-support tmux)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
# The multi-platform tests download busybox-static for arm64 and armhf (apt-get download), which
# needs those architectures in dpkg and their package lists.
update=false
for arch in arm64 armhf; do
    if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
        echo "adding dpkg architecture $arch"
        $sudo dpkg --add-architecture "$arch"
        update=true
    fi
done
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})) || $update; then
    $sudo apt-get update -qq
fi
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# QEMU's handlers live in binfmt_misc, which a container or a minimal machine may not have
# mounted; qemu-user-static registers them with the F flag, so RUN needs nothing in the image.
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    $sudo mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
for handler in qemu-aarch64 qemu-arm; do
    $sudo update-binfmts --enable "$handler"
done

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
