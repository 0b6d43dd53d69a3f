#!/usr/bin/env bash
# Side-by-side: `nbd copy` / `nbd bench` (each adapter) against libnbd's
# nbdcopy, in one run, on the same nbdkit memory server. Prints a Markdown
# table of medians (wall time, client CPU user+sys) and ratios ours/libnbd.
#
#   bazel build -c opt //tools/nbd:nbd
#   NBD=bazel-bin/tools/nbd/nbd tools/perf/compare.sh            # defaults
#   SIZE=256M REPEAT=5 STRACE=1 tools/perf/compare.sh
#
# Environment: NBD (our binary), SIZE (export size, default 1G), REPEAT
# (runs per measurement, median taken; default 3), THREADS (nbdkit -t,
# default 16), STRACE=1 (also count system calls with strace -c -f for the
# 4K case; slow), ADAPTERS (default "blocking epoll io_uring").
set -euo pipefail

NBD=${NBD:-bazel-bin/tools/nbd/nbd}
SIZE=${SIZE:-1G}
REPEAT=${REPEAT:-3}
THREADS=${THREADS:-16}
ADAPTERS=${ADAPTERS:-blocking epoll io_uring}
STRACE=${STRACE:-0}

for prog in nbdkit nbdcopy /usr/bin/time "$NBD"; do
  command -v "$prog" >/dev/null || { echo "compare.sh: $prog not found" >&2; exit 2; }
done

dir=$(mktemp -d /tmp/nbd-perf.XXXXXX)
sock=$dir/sock
cleanup() {
  [[ -n ${server_pid:-} ]] && kill "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

nbdkit -f --exit-with-parent -U "$sock" -t "$THREADS" memory "$SIZE" &
server_pid=$!
for _ in $(seq 100); do [[ -S $sock ]] && break; sleep 0.05; done
uri="nbd+unix:///?socket=$sock"

# A dense source file (nbdkit pattern: no zero blocks, so zero detection
# never kicks in) that also fills the memory server for the read tests.
nbdcopy -- [ nbdkit pattern "$SIZE" ] "$dir/src.img"
nbdcopy "$dir/src.img" "$uri"

# run LABEL CMD...: REPEAT runs; prints "LABEL median_wall median_cpu".
run() {
  local label=$1; shift
  local walls=() cpus=()
  for _ in $(seq "$REPEAT"); do
    /usr/bin/time -f "%e %U %S" -o "$dir/t" "$@" >/dev/null 2>"$dir/err" || {
      echo "compare.sh: $label failed:" >&2; cat "$dir/err" >&2; exit 1; }
    read -r wall user sys <"$dir/t"
    walls+=("$wall")
    cpus+=("$(echo "$user + $sys" | bc -l)")
  done
  local mw mc
  mw=$(printf '%s\n' "${walls[@]}" | sort -g | sed -n "$(( (REPEAT + 1) / 2 ))p")
  mc=$(printf '%s\n' "${cpus[@]}" | sort -g | sed -n "$(( (REPEAT + 1) / 2 ))p")
  echo "$label $mw $mc"
}

# table TITLE BASE_LINE OUR_LINES...: one Markdown block with ratios.
table() {
  local title=$1 base=$2; shift 2
  local bw bc
  read -r _ bw bc <<<"$base"
  echo
  echo "### $title"
  echo
  echo "| client | wall s | CPU s (user+sys) | wall ours/libnbd | CPU ours/libnbd |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  echo "| nbdcopy (libnbd) | $bw | $bc | 1.00 | 1.00 |"
  local line label w c
  for line in "$@"; do
    read -r label w c <<<"$line"
    printf '| %s | %s | %s | %.2f | %.2f |\n' \
      "nbd copy --adapter ${label#nbd-copy:}" "$w" "$c" \
      "$(echo "$w / $bw" | bc -l)" "$(echo "$c / $bc" | bc -l)"
  done
}

# compare TITLE SRC DST NBDCOPY_OPTS... -- NBD_OPTS...
compare() {
  local title=$1 src=$2 dst=$3; shift 3
  local lib=() ours=()
  while [[ $1 != -- ]]; do lib+=("$1"); shift; done
  shift
  ours=("$@")
  local base lines=()
  base=$(run nbdcopy nbdcopy "${lib[@]}" "$src" "$dst")
  for a in $ADAPTERS; do
    lines+=("$(run "nbd-copy:$a" "$NBD" copy "$src" "$dst" \
      "${ours[@]}" --adapter "$a")")
  done
  table "$title" "$base" "${lines[@]}"
}

echo "## nbd-engine vs libnbd, $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "- machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), kernel $(uname -r)"
echo "- server: nbdkit $(nbdkit --version | cut -d' ' -f2) memory $SIZE -t $THREADS on a Unix socket; $(nbdcopy --version | head -1)"
echo "- median of $REPEAT runs; CPU = client user+sys from /usr/bin/time"

big=(--requests=64 --connections=4 --request-size=262144)
ours_big=(--requests 64 --connections 4 --request-size 262144)
compare "(a) NBD -> null:, 256K x 64 requests x 4 connections" \
  "$uri" null: "${big[@]}" -- "${ours_big[@]}"
compare "(b) file -> NBD, 256K x 64 requests x 4 connections" \
  "$dir/src.img" "$uri" "${big[@]}" -- "${ours_big[@]}"
small=(--requests=16 --connections=1 --request-size=4096)
ours_small=(--requests 16 --connections 1 --request-size 4096)
compare "(c) NBD -> null:, 4K x 16 requests x 1 connection" \
  "$uri" null: "${small[@]}" -- "${ours_small[@]}"

echo
echo "### (c') nbd bench --op read --bs 4K --qd 16 (sequential, 5 s)"
echo
echo '```'
for a in $ADAPTERS; do
  "$NBD" bench "$uri" --op read --bs 4K --qd 16 --seconds 5 --adapter "$a" --json
done
echo '```'

if [[ $STRACE == 1 ]] && command -v strace >/dev/null; then
  echo
  echo "### system calls, (c) 4K case (strace -c -f, total calls)"
  echo
  count() {
    strace -c -f -o "$dir/strace" "$@" >/dev/null 2>&1
    # The total line: % time, seconds, usecs/call, calls, [errors], total.
    awk '$NF == "total" {print $4}' "$dir/strace" | tail -1
  }
  ops=$(( $(numfmt --from=iec "$SIZE") / 4096 ))
  n=$(count nbdcopy "${small[@]}" "$uri" null:)
  echo "- nbdcopy: $n calls, $(echo "scale=2; $n / $ops" | bc) per 4K read"
  for a in $ADAPTERS; do
    n=$(count "$NBD" copy "$uri" null: "${ours_small[@]}" --adapter "$a")
    echo "- nbd copy --adapter $a: $n calls, $(echo "scale=2; $n / $ops" | bc) per 4K read"
  done
fi
