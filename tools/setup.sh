#!/usr/bin/env bash
# Installs the Debian 12 packages that nbd-engine needs to build and test.
#
# Idempotent: when every package is already installed it only runs
# dpkg-query and returns in well under a second. Otherwise it runs
# `apt-get update` once and installs just the missing packages.
#
# Works as root; as another user it uses sudo when sudo exists.
set -euo pipefail

PACKAGES=(
  # Build system (Bazel 4.2.3) and the rules_java it wants.
  bazel-bootstrap
  bazel-rules-java
  # Libraries wrapped by //third_party.
  libabsl-dev
  libgtest-dev
  libgmock-dev
  liburing-dev
  libbenchmark-dev
  libgnutls28-dev
  # certtool and psktool, which the TLS tests make credentials with.
  gnutls-bin
  # clang 14 + libFuzzer runtime (--config=fuzz) and the formatter.
  clang
  libclang-rt-14-dev
  # lld links the fuzz targets (gold warns about the ASan runtime).
  lld
  clang-format
  # Reference NBD servers/clients for integration tests. The nbdkit package
  # itself ships the memory, null, pattern, data, sparse-random, sh and eval
  # plugins and the error, delay, blocksize and noextents filters.
  nbdkit
  qemu-utils
  nbd-server
  libnbd-dev
  libnbd-bin
  # nbdsh (Python bindings), used by the server tests.
  python3-libnbd
  # groff and man, which //docs/man:man_pages_test renders the pages with.
  groff-base
  man-db
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
  if [[ "$status" != "installed" ]]; then
    missing+=("$pkg")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "setup.sh: missing packages (${missing[*]}) and not root; no sudo" >&2
    exit 1
  fi
fi

echo "setup.sh: installing ${missing[*]}" >&2
"${SUDO[@]}" apt-get update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends "${missing[@]}"
