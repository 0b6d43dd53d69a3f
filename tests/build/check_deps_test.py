#!/usr/bin/env python3
"""Self-test of check_deps.py's visibility rules: the real tree passes, and
each way of breaking the public API (tests/build/public_targets.txt) fails
with a line naming the target.

Usage: check_deps_test.py WORKSPACE_DIR

Each case copies the workspace's BUILD files, sources, README.md and the
allow-list into a fresh temporary directory, edits one thing and runs
check_deps.py on the copy.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

COPIED = ("protocol", "adapters", "tools", "tests", "docs", "third_party")
COPIED_FILES = ("README.md", "WORKSPACE", "BUILD")


def copy_workspace(source, dest):
    ignore = shutil.ignore_patterns("bazel-*", "__pycache__")
    for d in COPIED:
        shutil.copytree(os.path.join(source, d), os.path.join(dest, d),
                        symlinks=True, ignore=ignore)
    for f in COPIED_FILES:
        shutil.copy(os.path.join(source, f), dest)


def edit(path, old, new, count=1):
    with open(path) as f:
        text = f.read()
    if old not in text:
        raise AssertionError("%s does not contain %r" % (path, old))
    with open(path, "w") as f:
        f.write(text.replace(old, new, count))


def sub(path, pattern, replacement):
    with open(path) as f:
        text = f.read()
    new, n = re.subn(pattern, replacement, text, count=1, flags=re.M)
    if n != 1:
        raise AssertionError("%s does not match %r" % (path, pattern))
    with open(path, "w") as f:
        f.write(new)


def make_internal_public(ws):
    # //protocol/internal names its users; add public to them.
    edit(os.path.join(ws, "protocol/internal/BUILD"), "visibility = [",
         'visibility = [\n        "//visibility:public",')


def make_test_helper_public(ws):
    sub(os.path.join(ws, "tests/testing/BUILD"),
        r'visibility = \["//tests:__subpackages__"\]',
        'visibility = ["//visibility:public"]')


def make_sh_test_public(ws):
    edit(os.path.join(ws, "tests/build/BUILD"), 'name = "layering_test",',
         'name = "layering_test",\n    visibility = ["//visibility:public"],')


def list_internal(ws):
    make_internal_public(ws)
    with open(os.path.join(ws, "tests/build/public_targets.txt"), "a") as f:
        f.write("//protocol/internal\n")


def unpublish_pump(ws):
    edit(os.path.join(ws, "adapters/pump/BUILD"),
         'visibility = ["//visibility:public"]',
         'visibility = ["//:adapters_and_above"]')


def list_missing_target(ws):
    with open(os.path.join(ws, "tests/build/public_targets.txt"), "a") as f:
        f.write("//adapters/pump:no_such_target\n")


def public_default(ws):
    edit(os.path.join(ws, "docs/examples/BUILD"), "[cc_binary(",
         'package(default_visibility = ["//visibility:public"])\n\n'
         "[cc_binary(")


def readme_forgets_engine(ws):
    path = os.path.join(ws, "README.md")
    with open(path) as f:
        text = f.read()
    text = re.sub(r"//adapters/engine(:engine)?(?![\w/:])", "ENGINE", text)
    with open(path, "w") as f:
        f.write(text)


# (name, edit, a line check_deps must print); None: must pass.
CASES = [
    ("unchanged tree", None, None),
    ("internal library made public", make_internal_public,
     r"^//protocol/internal:internal: public, but not in the public API"),
    ("test helper made public", make_test_helper_public,
     r"^//tests/testing:\w+: public, but not in the public API"),
    ("sh_test made public", make_sh_test_public,
     r"^//tests/build:layering_test: public, but not in the public API"),
    ("internal library listed and public", list_internal,
     r"^//protocol/internal:internal: listed in .*never public"),
    ("listed target not public", unpublish_pump,
     r'^//adapters/pump:pump: listed in .*, but not visibility = '
     r'\["//visibility:public"\]'),
    ("listed target does not exist", list_missing_target,
     r"^//adapters/pump:no_such_target: listed in .*, but no such target"),
    ("package default visibility public", public_default,
     r"^//docs/examples: package default_visibility is public"),
    ("README misses a public target", readme_forgets_engine,
     r"^//adapters/engine:engine: listed in .*, but README.md does not"),
]


def main():
    source = os.path.abspath(sys.argv[1])
    checker = os.path.join(source, "tests/build/check_deps.py")
    failed = 0
    for name, change, expected in CASES:
        with tempfile.TemporaryDirectory(prefix="nbd-check-deps.") as ws:
            copy_workspace(source, ws)
            if change:
                change(ws)
            run = subprocess.run([sys.executable, checker, ws],
                                 stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
        out = run.stdout
        if expected is None:
            ok = run.returncode == 0 and not out.strip()
            want = "exit 0, no output"
        else:
            ok = run.returncode == 1 and re.search(expected, out, re.M)
            want = "exit 1 and a line matching %r" % expected
        print("%s: %s" % ("ok  " if ok else "FAIL", name))
        if not ok:
            failed += 1
            print("  wanted %s; got exit %d:\n%s" % (want, run.returncode,
                                                      out))
    print("%d of %d cases passed" % (len(CASES) - failed, len(CASES)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
