#!/bin/bash
# Runs every example of docs/adapters.md and docs/embedding.md against a
# real server (nbdkit memory on a Unix socket), so the documented code is
# known to work, not just to compile. Skips (passes with a note) when
# nbdkit is missing.
set -euo pipefail

if ! command -v nbdkit >/dev/null; then
  echo "nbdkit not installed; skipping"
  exit 0
fi
dir="$(mktemp -d /tmp/nbd-examples.XXXXXX)"
nbdkit -f -U "$dir/s" memory 1M &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 100); do
  [[ -S "$dir/s" ]] && break
  sleep 0.05
done
uri="nbd+unix:///?socket=$dir/s"
status=0
for example in "$@"; do
  name="$(basename "$example")"
  if out="$(timeout 60 "$example" "$uri" </dev/null 2>&1)"; then
    echo "ok   $name: $out"
  else
    echo "FAIL $name (exit $?): $out"
    status=1
  fi
done
exit "$status"
