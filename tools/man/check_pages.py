#!/usr/bin/env python3
"""Checks the reference pages against the public headers and renders them.

Usage (docs/man/BUILD runs it as //docs/man:man_pages_test):
  check_pages.py [--root=DIR] --header=H... --class=C... --call=F...
                 [--only=PREFIX] [--max-width=N | --warn-width=N]
                 [--allow-ref=NAME(N)...]
                 [--extra-page=NAME...] SOURCES.3.md... PAGES.3...

  --root=DIR      the source tree the --header paths are in (default .)
  --header=PATH   a public header; every public function in it may have a
                  page (a page naming anything else is stale)
  --class=NAME    every public method of this class needs a page
  --call=NAME     this function or method needs a page; a class name means
                  the class page (its constructor and options). A page
                  named after any class in the headers is allowed.
  --only=PREFIX   judge missing pages only for names starting with PREFIX
                  (e.g. --only=nbd::Client); everything else is still checked
  --max-width=N   rendered lines (man, MANWIDTH=N) must fit in N columns
  --warn-width=N  the same, reported as notes only
  --allow-ref=R   a SEE ALSO reference that is neither a page nor libnbd's
  --extra-page=N  a page that names no function (allowed, not stale)

Checks:
  1. every source parses (tools/man/md2man.py) and has its generated page;
  2. groff -man -Tutf8 -ww -z reports nothing for any page, and man -l
     renders it with its NAME and every required section, a header line
     that does not overlap and (with --max-width) no line wider than that
     (--warn-width: noted, not failed);
  3. every required method has a page; no page names a function that no
     header declares (stale), and a page's `header:` is where its name is
     declared and its `target:` that header's package;
  4. SEE ALSO names existing pages, libnbd pages (nbd_*(3), libnbd(3)) or
     an --allow-ref; ERRORS names an errno in bold (or says "None.").
Prints every problem and exits 1 if there is any.
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cxx_api  # noqa: E402
import md2man  # noqa: E402

def parse_args(argv):
    opts = {"header": [], "class": [], "call": [], "only": [],
            "allow-ref": [], "extra-page": [], "max-width": None,
            "warn-width": None, "root": None}
    files = []
    for arg in argv:
        m = re.match(r"^--([a-z\-]+)=(.*)$", arg)
        if m:
            key, value = m.group(1), m.group(2)
            if key not in opts:
                raise SystemExit("check_pages: unknown option --%s" % key)
            if key in ("max-width", "warn-width"):
                opts[key] = int(value)
            elif key == "root":
                opts[key] = value
            else:
                opts[key].append(value)
        elif arg.startswith("--"):
            raise SystemExit("check_pages: unknown option %s" % arg)
        else:
            files.append(arg)
    return opts, files


def header_package(path):
    return "//" + os.path.dirname(path)


def target_package(label):
    return label.split(":", 1)[0]


def render_checks(page, troff_path, max_width, warn_width, problems,
                  notes):
    """groff warnings, man -l output, header layout and width."""
    where = os.path.basename(troff_path)
    groff = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z", troff_path],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if groff.returncode != 0 or groff.stderr.strip():
        problems.append("%s: groff -ww: %s" % (
            where, groff.stderr.strip() or "exit %d" % groff.returncode))
    width = max_width or warn_width or 80
    env = dict(os.environ, MANWIDTH=str(width), MANPAGER="cat", PAGER="cat",
               LC_ALL="C.UTF-8", MAN_KEEP_FORMATTING="")
    env.pop("MANPATH", None)
    man = subprocess.run(["man", "--warnings", "-l", troff_path],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env, text=True)
    if man.returncode != 0 or man.stderr.strip():
        problems.append("%s: man -l: %s" % (
            where, man.stderr.strip() or "exit %d" % man.returncode))
        return
    # Strip overstrike (bold/underline) in case formatting was kept.
    text = re.sub(r".\x08", "", man.stdout)
    lines = text.split("\n")
    sections = [l for l in lines if re.match(r"^[A-Z][A-Z ]+$", l)]
    for title in ["NAME"] + md2man.REQUIRED_SECTIONS:
        if title not in sections:
            problems.append("%s: man -l output lacks the %s section"
                            % (where, title))
    head = lines[0] if lines else ""
    title, _ = md2man.header_title(page.name)
    mark = title + "(3)"
    if not (head.startswith(mark) and head.rstrip().endswith(mark)):
        problems.append("%s: the header line is garbled at %d columns: %r"
                        % (where, width, head))
    for n, line in enumerate(lines, 1):
        if len(line) > width and (max_width or warn_width):
            (problems if max_width else notes).append(
                "%s: rendered line %d is %d columns wide (at most %d; a "
                "code line may be %d characters): %s"
                % (where, n, len(line), width, width - 11,
                   line.strip()[:60]))


def errors_checks(page, problems):
    """ERRORS names at least one errno in bold, or says "None."."""
    blocks = page.section("ERRORS") or []
    text = " ".join(b.text() if b.kind != "list" else
                    " ".join(t for _, _, item in b.items for _, t in item)
                    for b in blocks)
    if re.search(r"\*\*E[A-Z0-9]+\*\*", text):
        return
    if text.strip().startswith("None"):
        return
    problems.append("%s: ERRORS names no errno in bold (e.g. '- **EINVAL** "
                    "(`FailedPrecondition`): ...') and does not say 'None.'"
                    % page.path)


def main(argv):
    opts, files = parse_args(argv[1:])
    sources = [f for f in files if f.endswith(".3.md")]
    troffs = [f for f in files if f.endswith(".3")]
    problems = []
    notes = []  # printed, not failing

    # ---- The API ------------------------------------------------------------
    declared = {}  # qualname -> header path
    classes = {}   # class name -> header path
    constructible = set()
    apis = {}
    for header in opts["header"]:
        with open(os.path.join(opts["root"] or ".", header),
                  encoding="utf-8") as f:
            api = cxx_api.parse_header(f.read())
        apis[header] = api
        for name in api.functions:
            declared.setdefault(name, header)
        for cls in api.classes:
            classes.setdefault(cls, header)
        constructible |= api.constructible
    required = {}  # name -> why
    for cls in opts["class"]:
        if cls not in classes:
            problems.append("--class=%s: no header given declares it"
                            % cls)
            continue
        methods = apis[classes[cls]].methods_of(cls)
        if not methods:
            problems.append("--class=%s: found no public methods" % cls)
        for m in methods:
            required[m] = "a public method of %s" % cls
    for call in opts["call"]:
        if call in declared:
            required[call] = "listed with --call"
        elif call in classes and call in constructible:
            required[call] = "the page of class %s (its constructor)" % call
        else:
            problems.append("--call=%s: no header given declares it "
                            "(renamed or removed? update docs/man/BUILD)"
                            % call)

    # ---- Sources and pages ----------------------------------------------
    pages = {}  # name -> Page
    troff_by_stem = {os.path.basename(t)[:-len(".3")]: t for t in troffs}
    for src in sources:
        try:
            with open(src, encoding="utf-8") as f:
                page = md2man.parse(f.read(), src)
        except md2man.SourceError as e:
            problems.append(str(e))
            continue
        if page.name in pages:
            problems.append("%s: a second page for %s" % (src, page.name))
        pages[page.name] = page
        stem = md2man.page_stem(page.name)
        if stem not in troff_by_stem:
            problems.append("%s: no generated page %s.3" % (src, stem))
            continue
        render_checks(page, troff_by_stem[stem], opts["max-width"],
                      opts["warn-width"], problems, notes)
        errors_checks(page, problems)
    for stem in troff_by_stem:
        if not any(md2man.page_stem(n) == stem for n in pages):
            problems.append("%s.3: generated, but no source names it" % stem)

    # ---- Coverage -------------------------------------------------------
    missing = sorted(n for n in required
                     if n not in pages and (
                         not opts["only"] or
                         any(n.startswith(p) for p in opts["only"])))
    for name in missing:
        problems.append("missing page: %s (%s) needs docs/man/%s.3.md"
                        % (name, required[name], md2man.page_stem(name)))
    for name, page in sorted(pages.items()):
        if name in opts["extra-page"]:
            continue
        if name in declared:
            header = declared[name]
        elif name in classes:
            header = classes[name]  # a class page (constructor, overview)
        else:
            problems.append("%s: stale page: %s is not a public function, "
                            "method or class in the headers checked (%s)"
                            % (page.path, name, ", ".join(opts["header"])))
            continue
        if page.front["header"] != header:
            problems.append("%s: header: says %s, but %s is declared in %s"
                            % (page.path, page.front["header"], name, header))
        if target_package(page.front["target"]) != header_package(header):
            problems.append("%s: target: %s is not the package of %s (%s)"
                            % (page.path, page.front["target"], header,
                               header_package(header)))

    # ---- References -----------------------------------------------------
    for name, page in sorted(pages.items()):
        for ref, sect in page.see_also():
            full = "%s(%s)" % (ref, sect)
            if full in opts["allow-ref"]:
                continue
            if ref in pages and sect == "3":
                continue
            if ref == name:
                problems.append("%s: SEE ALSO names the page itself"
                                % page.path)
                continue
            # libnbd's pages by their pattern: which exist depends on the
            # libnbd version installed, so they are not looked up.
            if sect == "3" and (ref == "libnbd" or
                                re.match(r"^nbd_[a-z0-9_]+$", ref)):
                continue
            problems.append("%s: SEE ALSO %s is neither a page here, a "
                            "libnbd page nor an --allow-ref" % (page.path,
                                                                full))

    for n in notes:
        print("note: " + n)
    for p in problems:
        print(p)
    print("%d page(s), %d required name(s)%s, %d problem(s)"
          % (len(pages), len(required),
             " (missing judged for %s only)" % ", ".join(opts["only"])
             if opts["only"] else "", len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
