#!/usr/bin/env bash
# Makes `busybox:latest` in the kiln store without a registry: a root filesystem built from the
# host's static busybox (Debian: apt-get install busybox-static), imported with `kiln import`.
#
# The tree is the one the integration tests use (tests/support/busybox.rs): /bin/busybox, a
# symlink to it for every applet at the path `busybox --list-full` gives, /etc/passwd and
# /etc/group with root and nobody, and /tmp (1777), /root (0700), /dev, /proc, /sys, /home, /var.
# The tarball has sorted names, owner 0:0 and mtime 0, so the same busybox always gives the same
# layer. The image's CMD is ["sh"], as the official busybox image's.
#
# Usage: examples/busybox-base.sh [NAME]      (default busybox:latest)
# The store is KILN_ROOT's (or kiln's default). kiln is the one on PATH, else this checkout's
# `cargo run --release --`. BUSYBOX=/path/to/busybox picks another binary.
set -euo pipefail

name=${1:-busybox:latest}
busybox=${BUSYBOX:-$(command -v busybox || true)}
if [ -z "$busybox" ] || [ ! -x "$busybox" ]; then
    echo "error: busybox not found: install busybox-static (apt-get install busybox-static)" >&2
    exit 1
fi
# A static binary has no program interpreter: check the ELF headers rather than trust `file`.
if LC_ALL=C readelf -l "$busybox" 2>/dev/null | grep -q 'Requesting program interpreter'; then
    echo "error: $busybox is dynamically linked: install busybox-static" >&2
    exit 1
fi
if ! LC_ALL=C readelf -h "$busybox" >/dev/null 2>&1; then
    echo "error: $busybox is not an ELF binary (readelf from binutils is needed to check it)" >&2
    exit 1
fi

if command -v kiln >/dev/null 2>&1; then
    kiln=(kiln)
else
    kiln=(cargo run --quiet --release --manifest-path "$(dirname "$0")/../Cargo.toml" --)
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,dev,proc,sys,home,var,root,tmp}
chmod 0755 "$root" "$root"/{bin,sbin,usr,usr/bin,usr/sbin,etc,dev,home,var}
chmod 0555 "$root"/proc "$root"/sys
chmod 0700 "$root"/root
chmod 1777 "$root"/tmp
install -m 0755 "$busybox" "$root/bin/busybox"
count=0
while read -r applet; do
    case $applet in
        "" | bin/busybox | /* | *..*) continue ;;
    esac
    mkdir -p "$root/$(dirname "$applet")"
    ln -s /bin/busybox "$root/$applet"
    count=$((count + 1))
done < <("$busybox" --list-full)
if [ "$count" -lt 100 ]; then
    echo "error: $busybox --list-full gave only $count applets" >&2
    exit 1
fi
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' >"$root/etc/group"
chmod 0644 "$root/etc/passwd" "$root/etc/group"

tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=gnu \
    -C "$root" -cf "$work/rootfs.tar" .
"${kiln[@]}" import --change 'CMD ["sh"]' "$work/rootfs.tar" "$name"
