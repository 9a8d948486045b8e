#!/bin/sh
# Symbolization cost of a first report in a large binary (examples/symbolize_cost.rs):
# heapsampler's symbolizer against the `backtrace` crate's, each in a fresh process.
# Usage: benches/symbolize_cost.sh [DIR of .rs files to parse]
set -eu
cd "$(dirname "$0")/.."
cargo build --release --example symbolize_cost
for mode in report backtrace; do
    target/release/examples/symbolize_cost "$mode" "$@"
done
