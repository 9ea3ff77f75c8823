#!/usr/bin/env bash
# Regenerates the README's gallery from default runs of every system, and the committed
# validation report (about five minutes, most of it the modular sweep).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=docs/figures
cargo build --release --bin simulate --bin validate
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
run matrix-completion matrix-completion --lambda 1e-4
run matrix-sensing matrix-sensing --lambda 1e-4
run diagonal diagonal --lambda 1e-4
run relu-paper-fig3 relu --preset paper-fig3
target/release/simulate relu --lambda 1e-3 --sweep sharpness=10,30,100,300,1000 --out runs/gallery-relu-sweep --quiet
cp runs/gallery-relu-sweep/sweep.png "$out/relu-sweep.png"
run modular modular --lambda 1e-4
target/release/simulate modular --lambdas 1e-2,1e-3,1e-4,1e-5,1e-6 --out runs/gallery-modular-sweep --quiet
cp runs/gallery-modular-sweep/sweep_accuracy.png "$out/modular-sweep.png"
cargo build --release --example tanh_network
target/release/examples/tanh_network --out runs/gallery-own-loss > /dev/null
cp runs/gallery-own-loss/trajectory.png "$out/own-loss.png"
cp runs/gallery-own-loss/function.png "$out/own-loss-function.png"
# The committed validation report (README, "Validation").
target/release/validate --out validation/reports/default
echo "gallery written to $out"
