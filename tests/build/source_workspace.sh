# Sourced by the tests in this package: sets $workspace to the source tree
# the test was built from. Bazel's runfiles hold symlinks into it; resolving
# the one for this file leads back to the checkout. Needs an unsandboxed run
# (tags = ["local"]): a sandbox would resolve to a copy or not at all.
own="${TEST_SRCDIR:-}/${TEST_WORKSPACE:-nbd_engine}/tests/build/source_workspace.sh"
resolved="$(readlink -f "$own" || true)"
workspace="${resolved%/tests/build/source_workspace.sh}"
if [[ -z "$resolved" || ! -f "$workspace/WORKSPACE" ]]; then
  echo "FAIL: cannot find the source workspace ($own resolves to" \
    "'$resolved'); the test must run unsandboxed (tags = [\"local\"])"
  exit 1
fi
