#!/usr/bin/env bash
# Side-by-side over TLS: `nbd copy` (each adapter) against libnbd's nbdcopy,
# in one run, on the same nbdkit --tls=require memory server (X.509 with a
# throw-away CA made by certtool). Prints Markdown tables of medians: wall
# time, client user CPU and client system CPU, each with its ratio
# ours/libnbd (lower is better).
#
#   bazel build -c opt //tools/nbd:nbd
#   cp bazel-out/k8-opt/bin/tools/nbd/nbd /tmp/nbd-opt
#   NBD=/tmp/nbd-opt tools/perf/tls_compare.sh
#
# Environment: NBD (our binary), SIZE (export size, default 512M), REPEAT
# (runs per measurement, median taken; default 3), THREADS (nbdkit -t,
# default 16), ADAPTERS (default "blocking epoll io_uring").
set -euo pipefail

NBD=${NBD:-bazel-bin/tools/nbd/nbd}
SIZE=${SIZE:-512M}
REPEAT=${REPEAT:-3}
THREADS=${THREADS:-16}
ADAPTERS=${ADAPTERS:-blocking epoll io_uring}

for prog in nbdkit nbdcopy certtool /usr/bin/time bc "$NBD"; do
  command -v "$prog" >/dev/null || {
    echo "tls_compare.sh: $prog not found" >&2
    exit 2
  }
done

dir=$(mktemp -d /tmp/nbd-tlsperf.XXXXXX)
sock=$dir/sock
cleanup() {
  [[ -n ${server_pid:-} ]] && kill "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

# A CA, a server certificate for localhost, and the client's directory
# (the CA only).
pki=$dir/pki
mkdir -p "$pki/server" "$pki/client"
certtool --generate-privkey --key-type=ecdsa --outfile "$pki/ca-key.pem" 2>/dev/null
printf 'cn = "perf CA"\nca\ncert_signing_key\nexpiration_days = 30\n' >"$pki/ca.tmpl"
certtool --generate-self-signed --load-privkey "$pki/ca-key.pem" \
  --template "$pki/ca.tmpl" --outfile "$pki/server/ca-cert.pem" 2>/dev/null
cp "$pki/server/ca-cert.pem" "$pki/client/"
certtool --generate-privkey --key-type=ecdsa \
  --outfile "$pki/server/server-key.pem" 2>/dev/null
printf 'cn = "localhost"\ndns_name = "localhost"\ntls_www_server\nencryption_key\nsigning_key\nexpiration_days = 30\n' \
  >"$pki/server.tmpl"
certtool --generate-certificate --load-privkey "$pki/server/server-key.pem" \
  --load-ca-certificate "$pki/server/ca-cert.pem" \
  --load-ca-privkey "$pki/ca-key.pem" --template "$pki/server.tmpl" \
  --outfile "$pki/server/server-cert.pem" 2>/dev/null

nbdkit -f --exit-with-parent -U "$sock" -t "$THREADS" --tls=require \
  --tls-certificates="$pki/server" memory "$SIZE" &
server_pid=$!
for _ in $(seq 100); do [[ -S $sock ]] && break; sleep 0.05; done
uri="nbds+unix:///?socket=$sock&tls-certificates=$pki/client"

# A dense source file (no zero blocks) that also fills the server.
nbdcopy -- [ nbdkit pattern "$SIZE" ] "$dir/src.img"
nbdcopy "$dir/src.img" "$uri"

median() { sort -g | sed -n "$(((REPEAT + 1) / 2))p"; }

# run LABEL CMD...: REPEAT runs; prints "LABEL wall user sys" (medians).
run() {
  local label=$1
  shift
  local walls=() users=() syss=()
  for _ in $(seq "$REPEAT"); do
    /usr/bin/time -f "%e %U %S" -o "$dir/t" "$@" >/dev/null 2>"$dir/err" || {
      echo "tls_compare.sh: $label failed:" >&2
      cat "$dir/err" >&2
      exit 1
    }
    read -r wall user sys <"$dir/t"
    walls+=("$wall")
    users+=("$user")
    syss+=("$sys")
  done
  echo "$label $(printf '%s\n' "${walls[@]}" | median)" \
    "$(printf '%s\n' "${users[@]}" | median)" \
    "$(printf '%s\n' "${syss[@]}" | median)"
}

ratio() { if [[ $(echo "$2 == 0" | bc) == 1 ]]; then echo "-"; else printf '%.2f' "$(echo "$1 / $2" | bc -l)"; fi; }

# compare TITLE SRC DST NBDCOPY_OPTS... -- NBD_OPTS...
compare() {
  local title=$1 src=$2 dst=$3
  shift 3
  local lib=() ours=()
  while [[ $1 != -- ]]; do lib+=("$1"); shift; done
  shift
  ours=("$@")
  local bw bu bs
  read -r _ bw bu bs <<<"$(run nbdcopy nbdcopy "${lib[@]}" "$src" "$dst")"
  echo
  echo "### $title"
  echo
  echo "| client | wall s | user s | sys s | wall ours/libnbd | user ours/libnbd | sys ours/libnbd |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
  echo "| nbdcopy (libnbd) | $bw | $bu | $bs | 1.00 | 1.00 | 1.00 |"
  local a w u s
  for a in $ADAPTERS; do
    read -r _ w u s <<<"$(run "$a" "$NBD" copy "$src" "$dst" "${ours[@]}" --adapter "$a")"
    echo "| nbd copy --adapter $a | $w | $u | $s | $(ratio "$w" "$bw") | $(ratio "$u" "$bu") | $(ratio "$s" "$bs") |"
  done
}

echo "## nbd-engine vs libnbd over TLS, $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "- machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), kernel $(uname -r), $(certtool --version | head -1)"
echo "- server: nbdkit $(nbdkit --version | cut -d' ' -f2) --tls=require (X.509, ECDSA) memory $SIZE -t $THREADS on a Unix socket; $(nbdcopy --version | head -1)"
echo "- median of $REPEAT runs; client CPU from /usr/bin/time, user and system apart"

big=(--requests=64 --connections=4 --request-size=262144)
ours_big=(--requests 64 --connections 4 --request-size 262144)
compare "(t-a) NBD over TLS -> null:, 256K x 64 requests x 4 connections" \
  "$uri" null: "${big[@]}" -- "${ours_big[@]}"
compare "(t-b) file -> NBD over TLS, 256K x 64 requests x 4 connections" \
  "$dir/src.img" "$uri" "${big[@]}" -- "${ours_big[@]}"
