#!/usr/bin/env bash
# Builds and tests the example consumer workspace (this directory), which
# uses the engine as @nbd_engine through a local_repository:
#
#   bash examples/consumer/run.sh [BAZEL TEST FLAGS...]
#
# It runs in its own Bazel output base (NBD_CONSUMER_OUTPUT_BASE, default
# ~/.cache/nbd-engine-consumer/<hash of this directory's path>), so it never
# waits for or disturbs the main workspace's Bazel server, and stops that
# server at the end (`bazel shutdown`). A --disk_cache set in ~/.bazelrc
# applies here too, so a second run is fast.
#
# If NBD_CONSUMER_LABELS names a file, the test targets `bazel test //...`
# runs here are written to it first (one label a line) so that CI (.ci/run)
# can count a target that fails to build. Exit status: bazel test's.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
here="$(pwd -P)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}"
output_base="${NBD_CONSUMER_OUTPUT_BASE:-$cache/nbd-engine-consumer/$(
  printf '%s' "$here" | md5sum | cut -c1-12)}"
bazel=(bazel --output_base="$output_base")

stop() { "${bazel[@]}" shutdown || true; }
trap stop EXIT

if [[ -n "${NBD_CONSUMER_LABELS:-}" ]]; then
  if ! "${bazel[@]}" query --keep_going --noshow_progress \
    'tests(//...) except attr(tags, "\bmanual\b", //...)' \
    >"$NBD_CONSUMER_LABELS"; then
    echo "warning: bazel query for the consumer's test targets failed" >&2
  fi
fi

echo "==> (cd $here && bazel test //... $*)"
"${bazel[@]}" test //... "$@"
