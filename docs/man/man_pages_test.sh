#!/usr/bin/env bash
# //docs/man:man_pages_test: every reference page renders without a groff
# or man warning, has every section, names a function the public headers
# declare (no stale pages), and every method docs/man/BUILD requires has a
# page. The checks are tools/man/check_pages.py; the arguments come from
# docs/man/BUILD.
#
# The headers are read from the source tree, found by resolving this
# script's runfiles symlink (the test is tagged "local", so unsandboxed).
set -euo pipefail
own="docs/man/man_pages_test.sh"
resolved="$(readlink -f "$own" || true)"
workspace="${resolved%/docs/man/man_pages_test.sh}"
if [[ -z "$resolved" || ! -f "$workspace/WORKSPACE" ]]; then
  echo "FAIL: cannot find the source workspace ($own resolves to" \
    "'$resolved'); the test must run unsandboxed (tags = [\"local\"])"
  exit 1
fi
exec python3 tools/man/check_pages.py --root="$workspace" "$@"
