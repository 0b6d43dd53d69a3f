#!/usr/bin/env python3
"""Checks that code blocks in the docs are exact excerpts of compiled
examples, so the docs show code that builds and runs (run_examples_test).

Usage: check_doc_excerpts.py [--all MD]... [--marked MD]...
       check_doc_excerpts.py --update MD...   (rewrite excerpts from sources)

A block is an excerpt when the line before its ```cpp fence is

    <!-- example: docs/examples/FILE.cc REGION -->

and the source marks the region with `// [START REGION]` and
`// [END REGION]` lines. The block must equal the lines between them,
with any marker lines inside left out and the common indentation removed.
--all MD: every fenced block of MD must be such an excerpt.
--marked MD: only the blocks marked as excerpts are checked.
Run from the workspace root (a test's runfiles directory). Prints one line
per problem and exits 1 if there is any.
"""
import os
import re
import sys

MARK = re.compile(r"^<!-- example: (\S+) (\S+) -->$")
FENCE = re.compile(r"^```(\S*)\s*$")
REGION_MARK = re.compile(r"^\s*// \[(START|END) ([\w-]+)\]\s*$")


def region(path, name):
    """The lines of region `name` in `path`, or an error string."""
    if not os.path.exists(path):
        return "no such file %s" % path
    lines = open(path).read().split("\n")
    start = end = None
    for i, line in enumerate(lines):
        m = REGION_MARK.match(line)
        if m and m.group(2) == name:
            if m.group(1) == "START":
                if start is not None:
                    return "%s: region %s starts twice" % (path, name)
                start = i
            elif start is not None and end is None:
                end = i
    if start is None or end is None:
        return "%s: no region %s ([START %s] ... [END %s])" % (
            path, name, name, name)
    body = [l for l in lines[start + 1:end] if not REGION_MARK.match(l)]
    indents = [len(l) - len(l.lstrip(" ")) for l in body if l.strip()]
    cut = min(indents) if indents else 0
    return [l[cut:] for l in body]


def blocks(text):
    """(line number, language, marker or None, lines) of each fenced block."""
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not re.match(r"^```\s*$", lines[j]):
            j += 1
        before = i - 1
        marker = MARK.match(lines[before]) if before >= 0 else None
        yield i + 1, m.group(1), marker, lines[i + 1:j]
        i = j + 1


def check(md, every):
    problems = []
    text = open(md).read()
    found = 0
    for line, lang, marker, body in blocks(text):
        where = "%s:%d" % (md, line)
        if marker is None:
            if every:
                problems.append("%s: a ```%s block that is not an excerpt "
                                "(precede it with <!-- example: FILE REGION "
                                "-->)" % (where, lang))
            continue
        found += 1
        if lang != "cpp":
            problems.append("%s: an excerpt must be a ```cpp block" % where)
            continue
        want = region(marker.group(1), marker.group(2))
        if isinstance(want, str):
            problems.append("%s: %s" % (where, want))
        elif body != want:
            diff = next((k for k in range(max(len(body), len(want)))
                         if k >= len(body) or k >= len(want)
                         or body[k] != want[k]), 0)
            problems.append(
                "%s: differs from %s region %s at its line %d:\n  doc:    %r\n"
                "  source: %r" % (where, marker.group(1), marker.group(2),
                                  diff + 1,
                                  body[diff] if diff < len(body) else None,
                                  want[diff] if diff < len(want) else None))
    # A marker not followed by a fence is a mistake too.
    lines = text.split("\n")
    for k, l in enumerate(lines):
        if MARK.match(l) and not (k + 1 < len(lines) and
                                  FENCE.match(lines[k + 1])):
            problems.append("%s:%d: example marker not followed by a ```cpp "
                            "fence" % (md, k + 1))
    return problems, found


def update(md):
    """Rewrites every marked block of `md` with its region's current text."""
    lines = open(md).read().split("\n")
    out = []
    i = 0
    while i < len(lines):
        marker = MARK.match(lines[i])
        out.append(lines[i])
        i += 1
        if not marker or i >= len(lines) or not FENCE.match(lines[i]):
            continue
        want = region(marker.group(1), marker.group(2))
        if isinstance(want, str):
            print(want)
            return 1
        out.append(lines[i])
        i += 1
        while i < len(lines) and not re.match(r"^```\s*$", lines[i]):
            i += 1
        out += want
    open(md, "w").write("\n".join(out))
    return 0


def main(argv):
    if len(argv) > 1 and argv[1] == "--update":
        # Developer convenience, run from the workspace root:
        #   python3 docs/examples/check_doc_excerpts.py --update docs/embedding.md
        return max([update(md) for md in argv[2:]] or [0])
    problems = []
    mode = None
    checked = []
    for arg in argv[1:]:
        if arg in ("--all", "--marked"):
            mode = arg
            continue
        if mode is None:
            print(__doc__)
            return 2
        p, found = check(arg, mode == "--all")
        problems += p
        checked.append("%s (%d excerpts)" % (arg, found))
    for p in problems:
        print(p)
    if not problems:
        print("ok: " + ", ".join(checked))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
