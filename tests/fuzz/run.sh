#!/usr/bin/env bash
# The short fuzz pass tests/run.sh ends with: every cargo-fuzz target replays its committed
# corpus (each input that ever crashed is in it), then fuzzes on for KILN_FUZZ_SECONDS (default
# 20) more. New inputs go to a temporary directory, so the committed corpora stay as they are; a
# crash fails the pass and leaves its input in tests/fuzz/artifacts/<target>/.
#
# Needs the nightly toolchain (cargo-fuzz is installed when missing). Outside CI a missing nightly
# skips the pass, saying so; under CI=true it is a failure.
#
# The build is unoptimised and without AddressSanitizer, so that it costs about what the corpus
# replay does; long campaigns use the defaults: `cargo +nightly fuzz run --fuzz-dir tests/fuzz T`.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${KILN_FUZZ_SECONDS:-20}
targets=(dockerfile shell_word dockerignore manifest auth_challenge reference tar_apply)

if ! cargo +nightly --version >/dev/null 2>&1; then
    if [ "${CI:-}" = true ]; then
        echo "fuzz: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
        exit 1
    fi
    echo "fuzz: SKIPPED: no nightly toolchain (rustup toolchain install nightly)"
    exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

cargo +nightly fmt --check
# cargo-fuzz has no --locked: fail here if Cargo.lock would change.
cargo +nightly fetch --locked --quiet
build=(--fuzz-dir . --dev --sanitizer none)
cargo +nightly fuzz build "${build[@]}"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for target in "${targets[@]}"; do
    mkdir -p "$scratch/$target"
    echo "fuzz: $target (${seconds}s after replaying corpus/$target)"
    log="$scratch/$target.log"
    if ! cargo +nightly fuzz run "${build[@]}" "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "fuzz: $target FAILED; the input is in tests/fuzz/artifacts/$target/" >&2
        exit 1
    fi
    grep -E '^stat::number_of_executed_units' "$log" | sed "s/^stat::/fuzz: $target: /"
done
