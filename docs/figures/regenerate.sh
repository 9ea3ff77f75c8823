#!/usr/bin/env bash
# Regenerates the README's gallery from the default runs of every system.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=docs/figures
cargo build --release --bin simulate
run() { # name, then simulate's arguments
    local name=$1; shift
    target/release/simulate "$@" --out "runs/gallery-$name" --quiet
    cp "runs/gallery-$name/trajectory.png" "$out/$name.png"
    for extra in runs/gallery-"$name"/*.png; do
        base=$(basename "$extra" .png)
        [ "$base" = trajectory ] || cp "$extra" "$out/$name-$base.png"
    done
}
run linear linear --lambda 1e-4
echo "gallery written to $out"
