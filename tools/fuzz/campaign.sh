#!/usr/bin/env bash
# Fuzzing campaigns over the libFuzzer targets in tests/fuzz.
#
#   tools/fuzz/campaign.sh run   [options] [TARGET...]
#   tools/fuzz/campaign.sh merge [options] [TARGET...]
#   tools/fuzz/campaign.sh summary [-o DIR]
#
# TARGET is a name like `server` (tests/fuzz/server_fuzzer.cc); the default
# is every target there.
#
# run: builds the targets with --config=fuzz in their own output base, then
# fuzzes each one for CPU-SECONDS of CPU time (-t) spread over WORKERS
# processes (-w; with more than one, libFuzzer's -fork mode, which goes on
# after a crash and counts it; a single worker runs plain libFuzzer, which
# is faster on short runs but stops at the first crash), reading tests/fuzz/<target>_corpus and writing new units to
# DIR/<target>/new and crash inputs to DIR/<target>/artifacts. Prints, per
# target, the executions, exec/s, coverage (libFuzzer's cov: edges and ft:
# features at the end), the new corpus units and the crashes, and keeps the
# table in DIR/summary.txt (a second run appends to it).
#
# merge: minimises what the runs found into the committed corpus. The
# generated seeds (seed-*) and regression inputs (regress-*) always stay;
# the other files of tests/fuzz/<target>_corpus are replaced by the
# smallest set that libFuzzer's -merge=1 keeps from them and from
# DIR/<target>/new for coverage beyond the kept files, smallest first while
# the corpus stays within MAX-FILES files (-n) and MAX-KB KiB (-k). Review
# and commit the result. Crash inputs are not merged: once fixed, copy each
# one as tests/fuzz/<target>_corpus/regress-<what> (see DEVELOPERS.md).
#
# Options:
#   -t CPU-SECONDS  CPU time per target (default 120)
#   -w WORKERS      parallel fuzzing processes (default 1)
#   -o DIR          scratch directory (default /tmp/nbd-fuzz-campaign)
#   -b DIR          Bazel output base (default $NBD_FUZZ_OUTPUT_BASE or
#                   ~/.cache/nbd-engine-fuzz)
#   -j JOBS         Bazel --jobs (default 2)
#   -n MAX-FILES    merge: file cap per corpus (default 200)
#   -k MAX-KB       merge: size cap per corpus in KiB (default 2000)
#   -x FLAG         an extra libFuzzer flag (repeatable), e.g. -x -max_len=8192
#
# Per-target libFuzzer flags live in tests/fuzz/<target>.options (one flag
# per line, # comments), a dictionary in tests/fuzz/<target>.dict.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
FUZZ_DIR="$ROOT/tests/fuzz"

cpu_seconds=120
workers=1
out=/tmp/nbd-fuzz-campaign
base="${NBD_FUZZ_OUTPUT_BASE:-$HOME/.cache/nbd-engine-fuzz}"
jobs=2
max_files=200
max_kb=2000
extra=()

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
  exit "${1:-2}"
}

[[ $# -ge 1 ]] || usage
mode="$1"
shift
case "$mode" in
  run | merge | summary) ;;
  -h | --help | help) usage 0 ;;
  *) usage ;;
esac

while getopts "t:w:o:b:j:n:k:x:h" opt; do
  case "$opt" in
    t) cpu_seconds="$OPTARG" ;;
    w) workers="$OPTARG" ;;
    o) out="$OPTARG" ;;
    b) base="$OPTARG" ;;
    j) jobs="$OPTARG" ;;
    n) max_files="$OPTARG" ;;
    k) max_kb="$OPTARG" ;;
    x) extra+=("$OPTARG") ;;
    h) usage 0 ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))

if [[ $# -gt 0 ]]; then
  targets=("$@")
else
  targets=()
  for src in "$FUZZ_DIR"/*_fuzzer.cc; do
    name="$(basename "$src" _fuzzer.cc)"
    targets+=("$name")
  done
fi
for t in "${targets[@]}"; do
  if [[ ! -f "$FUZZ_DIR/${t}_fuzzer.cc" || ! -d "$FUZZ_DIR/${t}_corpus" ]]; then
    echo "campaign: no fuzz target '$t' (tests/fuzz/${t}_fuzzer.cc and" \
      "${t}_corpus/)" >&2
    exit 2
  fi
done

if [[ "$mode" == summary ]]; then
  cat "$out/summary.txt"
  exit 0
fi

bazel_fuzz() {
  (cd "$ROOT" && bazel --output_base="$base" "$@")
}

build() {
  local labels=()
  for t in "${targets[@]}"; do labels+=("//tests/fuzz:${t}_fuzzer"); done
  echo "campaign: building ${labels[*]} (--config=fuzz, output base $base)"
  bazel_fuzz build --config=fuzz --jobs="$jobs" "${labels[@]}" >&2
  BIN="$(bazel_fuzz info --config=fuzz bazel-bin 2>/dev/null)/tests/fuzz"
  BUILT_AT="$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')"
  if [[ -n "$(cd "$ROOT" && git status --porcelain -- protocol adapters tests/fuzz 2>/dev/null)" ]]; then
    BUILT_AT="$BUILT_AT+changes"
  fi
}

# The flags of tests/fuzz/<target>.options and its dictionary.
target_flags() {
  local t="$1"
  if [[ -f "$FUZZ_DIR/$t.options" ]]; then
    sed -e 's/#.*//' "$FUZZ_DIR/$t.options" | tr -s ' \t' '\n' | sed '/^$/d'
  fi
  if [[ -f "$FUZZ_DIR/$t.dict" ]]; then echo "-dict=$FUZZ_DIR/$t.dict"; fi
}

# Reads a libFuzzer log and prints "execs exec/s cov ft".
stats() {
  local log="$1"
  # Fork mode: "#123: cov: 1 ft: 2 corp: 3 exec/s: 4 oom/timeout/crash: ..."
  # Plain mode: "#123  DONE  cov: 1 ft: 2 corp: 3/4b lim: 5 exec/s: 6 ..."
  grep -E '^#[0-9]+' "$log" | tail -n 1 | awk '
    {
      execs = $1; gsub(/[#:]/, "", execs)
      for (i = 2; i <= NF; ++i) {
        if ($i == "cov:") cov = $(i + 1)
        if ($i == "ft:") ft = $(i + 1)
        if ($i == "exec/s:" || $i == "exec/s") eps = $(i + 1)
        if ($i == "time:") { secs = $(i + 1); gsub(/s/, "", secs) }
      }
      # Fork mode prints the rate of its last job only: use the totals.
      if (secs > 0) eps = int(execs / secs)
      printf "%s %s %s %s\n", execs, eps, cov, ft
    }
    END { if (NR == 0) print "0 0 0 0" }'
}

count_crashes() {
  find "$1" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
    -o -name 'oom-*' \) | wc -l
}

run() {
  build
  mkdir -p "$out"
  local wall=$(((cpu_seconds + workers - 1) / workers))
  local header
  header=$(printf '%-8s %8s %6s %12s %8s %6s %6s %6s %7s' target cpu-s \
    workers execs exec/s cov ft new crashes)
  local rows=()
  for t in "${targets[@]}"; do
    local dir="$out/$t"
    mkdir -p "$dir/new" "$dir/artifacts"
    local log="$dir/fuzz-$(date +%Y%m%d-%H%M%S).log"
    local before crashes_before
    before=$(find "$dir/new" -type f | wc -l)
    crashes_before=$(count_crashes "$dir/artifacts")
    local flags
    mapfile -t flags < <(target_flags "$t")
    echo "campaign: $t for ${cpu_seconds} CPU-s (${workers} worker(s)," \
      "${wall}s wall), log $log"
    # One worker: a plain libFuzzer run (no job start-up costs; it stops at
    # the first crash). More: -fork, which goes on after crashes
    # (-ignore_crashes) and reports the totals of all its jobs. Run from
    # $dir so that stray files land there.
    local mode_flags=()
    if ((workers > 1)); then
      mode_flags=(-fork="$workers" -ignore_crashes=1 -ignore_timeouts=1
        -ignore_ooms=1)
    fi
    (cd "$dir" && "$BIN/${t}_fuzzer" "${mode_flags[@]}" \
      -max_total_time="$wall" -timeout=25 -rss_limit_mb=2048 \
      -artifact_prefix="$dir/artifacts/" -print_final_stats=1 \
      "${flags[@]}" "${extra[@]}" \
      "$dir/new" "$FUZZ_DIR/${t}_corpus") >"$log" 2>&1 || true
    local after crashes
    after=$(find "$dir/new" -type f | wc -l)
    crashes=$(($(count_crashes "$dir/artifacts") - crashes_before))
    read -r execs eps cov ft < <(stats "$log")
    rows+=("$(printf '%-8s %8s %6s %12s %8s %6s %6s %6s %7s' "$t" \
      "$cpu_seconds" "$workers" "$execs" "$eps" "$cov" "$ft" \
      "$((after - before))" "$crashes")")
  done
  {
    echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) built at $BUILT_AT"
    echo "$header"
    printf '%s\n' "${rows[@]}"
  } | tee -a "$out/summary.txt"
  echo "campaign: crash inputs (if any) are in $out/<target>/artifacts;" \
    "new units in $out/<target>/new ('merge' minimises them into the corpus)"
}

# Files merge never drops: generated seeds and regression inputs.
is_pinned() {
  case "$(basename "$1")" in
    seed-* | regress-*) return 0 ;;
    *) return 1 ;;
  esac
}

merge() {
  build
  for t in "${targets[@]}"; do
    local corpus="$FUZZ_DIR/${t}_corpus"
    local new="$out/$t/new"
    mkdir -p "$new"
    local work
    work="$(mktemp -d)"
    mkdir -p "$work/merged" "$work/old"
    # The base: the pinned files. Candidates: the committed other files and
    # the campaign's new units.
    local f
    for f in "$corpus"/*; do
      [[ -f "$f" ]] || continue
      if is_pinned "$f"; then cp "$f" "$work/merged/"; else cp "$f" "$work/old/"; fi
    done
    local flags
    mapfile -t flags < <(target_flags "$t" | grep -v '^-dict=' || true)
    if ! (cd "$work" && "$BIN/${t}_fuzzer" -merge=1 -timeout=25 \
      -rss_limit_mb=2048 "${flags[@]}" "${extra[@]}" \
      merged old "$new") >"$work/merge.log" 2>&1; then
      echo "campaign: merge of $t failed, see $work/merge.log" >&2
      continue
    fi
    # Cap: keep the smallest added files while the corpus fits.
    local n=0 bytes=0 size
    for f in "$work/merged"/*; do
      if is_pinned "$f"; then
        n=$((n + 1))
        bytes=$((bytes + $(stat -c %s "$f")))
      fi
    done
    local pinned_n="$n" kept=()
    while read -r size f; do
      is_pinned "$f" && continue
      if ((n + 1 > max_files || (bytes + size) / 1024 > max_kb)); then
        continue
      fi
      kept+=("$f")
      n=$((n + 1))
      bytes=$((bytes + size))
    done < <(find "$work/merged" -type f -printf '%s %p\n' | sort -n)
    local old_n
    old_n=$(find "$corpus" -maxdepth 1 -type f | wc -l)
    for f in "$corpus"/*; do
      [[ -f "$f" ]] && ! is_pinned "$f" && rm -f "$f"
    done
    for f in "${kept[@]}"; do cp "$f" "$corpus/"; done
    echo "campaign: $t: $old_n -> $n files, $((bytes / 1024)) KiB" \
      "($pinned_n seeds and regression inputs kept)"
    rm -rf "$work"
  done
}

"$mode"
