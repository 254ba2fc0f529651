#!/usr/bin/env bash
# The Python package (python/): its Rust code's rustfmt and clippy (python/ is a
# workspace of its own, like fuzz/, so the root workspace's steps do not see it), the
# README's one-command install into a fresh virtual environment, and its pytest suite
# (which runs the Rust demo for the cross-language tests).
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned so a CI run is reproducible; bump deliberately.
MATURIN=1.16.0
PYTEST=9.2.0
PYCAPNP=2.2.4

echo "-- rustfmt and clippy (python/)"
(cd python && cargo fmt -- --check && cargo clippy --release --all-targets --quiet -- -D warnings)

venv=$(mktemp -d /tmp/cst-python-venv.XXXXXX)
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
echo "-- tools: maturin $MATURIN, pytest $PYTEST, pycapnp $PYCAPNP"
pip install -q --disable-pip-version-check "maturin==$MATURIN" "pytest==$PYTEST" "pycapnp==$PYCAPNP"

echo "-- pip install ./python (the README's install; maturin builds the abi3 wheel, release)"
# --no-build-isolation: build with the pinned maturin above rather than fetching one.
pip install -q --disable-pip-version-check --no-build-isolation ./python

echo "-- the demo binary for the cross-language tests"
cargo build --quiet -p capnp-shm-demo
export CST_DEMO="$PWD/target/debug/capnp-shm-demo"

echo "-- pytest python/tests"
rm -f /dev/shm/cst-py-*
cd python
pytest -q -p no:cacheprovider tests
left=$(ls /dev/shm | grep -E '^cst-py-' || true)
if [ -n "$left" ]; then
  echo "python tests left segments in /dev/shm:"; echo "$left"; exit 1
fi
