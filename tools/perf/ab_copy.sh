#!/usr/bin/env bash
# Interleaved A/B of `nbd copy` binaries on compare.sh's case (b), file ->
# NBD, 256K x 64 requests x 4 connections: each round runs nbdcopy and then
# every binary with every adapter once, so load from elsewhere on the
# machine hits all of them alike. Prints the median wall time (and the
# fastest run) and the median client CPU (user+sys) of each.
#
#   BINS="/tmp/nbd-before /tmp/nbd-after" N=9 tools/perf/ab_copy.sh
#
# Environment: BINS (binaries, default bazel-bin/tools/nbd/nbd), N (rounds,
# default 7), SIZE (default 1G), ADAPTERS (default "blocking epoll io_uring").
set -euo pipefail

BINS=${BINS:-bazel-bin/tools/nbd/nbd}
N=${N:-7}
SIZE=${SIZE:-1G}
ADAPTERS=${ADAPTERS:-blocking epoll io_uring}

dir=$(mktemp -d /tmp/nbd-ab.XXXXXX)
sock=$dir/sock
cleanup() {
  [[ -n ${server_pid:-} ]] && kill "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

nbdkit -f --exit-with-parent -U "$sock" -t 16 memory "$SIZE" &
server_pid=$!
for _ in $(seq 100); do [[ -S $sock ]] && break; sleep 0.05; done
uri="nbd+unix:///?socket=$sock"
nbdcopy -- [ nbdkit pattern "$SIZE" ] "$dir/src.img"

# timed LABEL CMD...: appends "wall user sys" to $dir/t.LABEL.
timed() {
  local label=$1; shift
  /usr/bin/time -f "%e %U %S" -a -o "$dir/t.$label" "$@" >/dev/null
}

for _ in $(seq "$N"); do
  timed nbdcopy nbdcopy --requests=64 --connections=4 --request-size=262144 \
    "$dir/src.img" "$uri"
  i=0
  for bin in $BINS; do
    i=$((i + 1))
    for a in $ADAPTERS; do
      timed "$i:$(basename "$bin"):$a" "$bin" copy "$dir/src.img" "$uri" \
        --requests 64 --connections 4 --request-size 262144 --adapter "$a"
    done
  done
done

m=$(( (N + 1) / 2 ))
for f in "$dir"/t.*; do
  wall=$(awk '{print $1}' "$f" | sort -g | sed -n "${m}p")
  best=$(awk '{print $1}' "$f" | sort -g | head -1)
  cpu=$(awk '{print $2 + $3}' "$f" | sort -g | sed -n "${m}p")
  echo "${f##*/t.}: wall $wall s (fastest $best), CPU $cpu s"
done
