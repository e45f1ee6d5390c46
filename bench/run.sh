#!/usr/bin/env bash
# kiln against buildah and BuildKit on this machine: one command, two tables. See bench/README.md.
#   bash bench/run.sh [-n RUNS] [--only seed|bigctx|multistage|multiplatform|layers]... [--without buildah|buildkit|rootless|cache]... [--kiln PATH] [--keep]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! command -v python3 >/dev/null; then
    echo "bench: python3 is missing: apt-get install python3" >&2
    exit 1
fi
exec python3 "$here/bench.py" "$@"
