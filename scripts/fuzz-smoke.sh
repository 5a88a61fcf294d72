#!/usr/bin/env bash
# Runs each signature-parser fuzz target of fuzz/ for a short time (default 30 s each; first
# argument overrides). Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# Not part of CI: run it after changing src/signing. A crash leaves its input in
# fuzz/artifacts/<target>/ and makes this script fail.
set -euo pipefail

seconds="${1:-30}"
cd "$(dirname "$0")/../fuzz"

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz on nightly is needed: rustup toolchain install nightly && cargo install cargo-fuzz" >&2
    exit 2
fi

for target in $(cargo +nightly fuzz list); do
    echo "== $target (${seconds}s)"
    cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" -max_len=4096
done
echo "fuzz smoke: no crashes"
