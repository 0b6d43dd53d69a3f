#!/usr/bin/env bash
# nbd_head against `nbdkit pattern` (each 8-byte word holds its own offset,
# big-endian) on a Unix socket in a fresh mkdtemp directory under /tmp:
# prints the size and the first block's bytes, with each adapter. nbdkit
# runs captive (--run): it starts nbd_head once its socket listens and exits
# when nbd_head does. Skipped (exit 0, with a message) without nbdkit.
set -euo pipefail

nbd_head="$(realpath "$1")"
if ! command -v nbdkit >/dev/null 2>&1; then
  echo "SKIP: nbdkit is not installed"
  exit 0
fi
dir="$(mktemp -d /tmp/nbd-consumer.XXXXXX)"
trap 'rm -rf "$dir"' EXIT

want="size: 1048576
block 0 (4096 bytes): 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 08"
for adapter in blocking epoll io_uring; do
  # --run's command is a shell command line; $uri is set by nbdkit.
  if ! got="$(nbdkit -U "$dir/$adapter.sock" pattern 1M \
    --run "\"$nbd_head\" \"\$uri\" $adapter")"; then
    echo "FAIL ($adapter): nbdkit --run nbd_head exited non-zero:"
    echo "$got"
    exit 1
  fi
  if [[ "$got" != "$want" ]]; then
    echo "FAIL ($adapter): nbd_head printed:"
    echo "$got"
    echo "expected:"
    echo "$want"
    exit 1
  fi
  echo "ok: $adapter"
done
echo "PASS"
