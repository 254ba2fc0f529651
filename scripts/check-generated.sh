#!/usr/bin/env bash
# Regenerates the Rust code for schema/*.capnp with the installed `capnp` and fails if it
# differs from the checked-in copy in src/generated/ (which builds use when `capnp` is
# absent). CI runs it after `apt-get install -y capnproto`.
#
#   scripts/check-generated.sh           check
#   scripts/check-generated.sh --update  overwrite the checked-in copy instead
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v capnp >/dev/null; then
    echo "check-generated: the \`capnp\` compiler is not on PATH (apt-get install -y capnproto)" >&2
    exit 2
fi
echo "check-generated: using $(capnp --version) at $(command -v capnp)"

# A fresh value makes build.rs run again (it prints rerun-if-env-changed=CAPNP_SHM_REGENERATE).
export CAPNP_SHM_REGENERATE="$$-$(date +%s%N)"
# Only the library's build (the demo and the comparison bench run the same build.rs).
json=$(cargo build -p capnp-shm-transport --lib --message-format=json 2>/dev/null)
out_dir=$(printf '%s\n' "$json" \
    | grep '"reason":"build-script-executed"' \
    | grep '"package_id":"[^"]*capnp-shm-transport' \
    | sed -n 's/.*"out_dir":"\([^"]*\)".*/\1/p' | tail -n 1)
if [[ -z "$out_dir" || ! -d "$out_dir" ]]; then
    echo "check-generated: could not find the build script's OUT_DIR" >&2
    exit 2
fi

status=0
for fresh in "$out_dir"/*_capnp.rs; do
    name=$(basename "$fresh")
    checked_in="src/generated/$name"
    if [[ "${1:-}" == "--update" ]]; then
        cp "$fresh" "$checked_in"
        echo "check-generated: updated $checked_in"
    elif ! diff -u "$checked_in" "$fresh" >/dev/null 2>&1; then
        echo "check-generated: $checked_in is out of date with schema/ (or was made by another capnp version)." >&2
        diff -u "$checked_in" "$fresh" | head -n 40 >&2 || true
        echo "check-generated: run scripts/check-generated.sh --update with Debian's capnproto and commit the result." >&2
        status=1
    else
        echo "check-generated: $checked_in is up to date"
    fi
done
exit $status
