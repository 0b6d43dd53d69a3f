#!/usr/bin/env python3
"""Converts reference page sources (docs/man/<page>.3.md) to man pages.

Usage:
  md2man.py SOURCE.3.md OUTPUT.3
  md2man.py --out-dir DIR SOURCE.3.md...    (DIR/<page>.3 for each source)

The source format is docs/man/README.md: front matter (name, summary,
header, target), then "# SECTION" headings in a fixed order, each holding
paragraphs, "- " or "1. " lists and ``` fenced code blocks, with inline
`code`, **bold** and *italic*. Anything else is refused with
"FILE:LINE: what is wrong", so a page that would render badly never builds.

The output is date-free (the .TH date field is empty and the source string
fixed), so the same source always gives the same bytes. Non-ASCII
characters become groff's \\[uXXXX] escapes, so no input encoding is
assumed.
"""
import os
import re
import sys

REQUIRED_SECTIONS = ["SYNOPSIS", "DESCRIPTION", "PHASES", "RETURN VALUE",
                     "ERRORS", "SEE ALSO", "EXAMPLE"]
# Optional sections; they go between ERRORS and SEE ALSO, in any order.
OPTIONAL_SECTIONS = ["NOTES", "LIBNBD", "EVENTS", "OWNERSHIP", "THREADS",
                     "CAVEATS", "BUGS"]
FRONT_MATTER_FIELDS = ["name", "summary", "header", "target"]
CODE_LANGUAGES = ("", "cpp", "c++", "sh", "text", "python")

SOURCE = "nbd-engine"
MANUAL = "nbd-engine"
# man lays the header out as "TITLE(3)  MANUAL  TITLE(3)" in this many
# columns; a longer title makes the three overlap (groff 1.22 does not
# truncate), so long names are shortened in the header only.
HEADER_WIDTH = 80

# A man page reference such as nbd::Client::Shutdown(3) or nbd_shutdown(3).
REFERENCE = re.compile(r"^([A-Za-z_][A-Za-z0-9_:.\-]*)\(([1-9][a-z]*)\)$")
# The same inside prose (rendered with the name in bold).
PROSE_REFERENCE = re.compile(
    r"(?<![\w:])([A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*)"
    r"\(([1-9])\)")
# HTML that markdown would pass through; <placeholder> text is fine.
HTML_TAG = re.compile(
    r"<!--|</?(a|b|br|code|del|div|em|h[1-6]|hr|i|img|kbd|li|ol|p|pre|s|"
    r"span|strong|sub|sup|table|td|th|tr|tt|u|ul)(\s[^>]*)?/?>", re.I)
BULLET = re.compile(r"^- (.*)$")
ORDERED = re.compile(r"^(\d{1,2})\. (.*)$")
FENCE = re.compile(r"^```\s*([A-Za-z+]*)\s*$")
# "**TERM** (...): text", split at the first ": " (the term may name several
# errnos: "**EIO**, **EINVAL** (`InvalidArgument`): text").
TERM = re.compile(r"^(\*\*[^:]*?)(?<!:):\s+(.*)$", re.S)


class SourceError(Exception):
    """A malformed source; str() is "FILE:LINE: message"."""


def page_stem(name):
    """The file stem for a page name: nbd::Client::Disconnect ->
    nbd_Client_Disconnect."""
    return name.replace("::", "_")


class Block:
    def __init__(self, kind, line, lines=None, lang="", items=None,
                 ordered=False):
        self.kind = kind    # "para", "code" or "list"
        self.line = line    # source line where it starts
        self.lines = lines or []  # para/code: [(lineno, text)]
        self.lang = lang
        self.items = items or []  # list: [(lineno, number, [(lineno, text)])]
        self.ordered = ordered

    def text(self):
        """A paragraph's text as one string."""
        return " ".join(t.strip() for _, t in self.lines)


class Page:
    def __init__(self, path, front, sections):
        self.path = path
        self.front = front          # {field: value}
        self.sections = sections    # [(title, line, [Block])]

    @property
    def name(self):
        return self.front["name"]

    def section(self, title):
        for t, _, blocks in self.sections:
            if t == title:
                return blocks
        return None

    def see_also(self):
        """[(name, section)] from the SEE ALSO section."""
        blocks = self.section("SEE ALSO") or []
        refs = []
        for block in blocks:
            refs += parse_see_also(self.path, block)
        return refs


def _error(path, line, message):
    raise SourceError("%s:%d: %s" % (path, line, message))


def parse_see_also(path, block):
    if block.kind != "para":
        _error(path, block.line, "SEE ALSO must be one paragraph of "
               "comma-separated references such as nbd::Client::Shutdown(3)")
    text = block.text().strip()
    if text.endswith("."):
        text = text[:-1]
    refs = []
    for entry in text.split(","):
        entry = entry.strip()
        m = REFERENCE.match(entry)
        if not m:
            _error(path, block.line, "SEE ALSO entry %r is not a reference "
                   "like nbd::Client::Shutdown(3) (comma-separated, no "
                   "markup)" % entry)
        refs.append((m.group(1), m.group(2)))
    return refs


def parse(text, path="<source>"):
    """Parses a source into a Page; raises SourceError if it is malformed."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for i, line in enumerate(lines, 1):
        if "\t" in line:
            _error(path, i, "tab character; indent with spaces")
        if line != line.rstrip():
            _error(path, i, "trailing whitespace")
    front, body_start = _parse_front_matter(lines, path)
    sections = _parse_sections(lines, body_start, path)
    _check_sections(sections, path, len(lines))
    stem = os.path.basename(path)
    if stem.endswith(".3.md"):
        expected = page_stem(front["name"]) + ".3.md"
        if stem != expected:
            _error(path, 2, "name %r belongs in %s, not %s"
                   % (front["name"], expected, stem))
    page = Page(path, front, sections)
    page.see_also()  # validates the references
    return page


def _parse_front_matter(lines, path):
    if not lines or lines[0] != "---":
        _error(path, 1, "missing front matter: the file must start with "
               "'---', then name/summary/header/target lines, then '---'")
    front = {}
    i = 1
    while i < len(lines) and lines[i] != "---":
        m = re.match(r"^([a-z_]+):\s*(.*)$", lines[i])
        if not m:
            _error(path, i + 1, "front matter line is not 'field: value': %r"
                   % lines[i])
        field, value = m.group(1), m.group(2).strip()
        if field not in FRONT_MATTER_FIELDS:
            _error(path, i + 1, "unknown front matter field %r (known: %s)"
                   % (field, ", ".join(FRONT_MATTER_FIELDS)))
        if field in front:
            _error(path, i + 1, "front matter field %r given twice" % field)
        if not value:
            _error(path, i + 1, "front matter field %r is empty" % field)
        front[field] = value
        i += 1
    if i == len(lines):
        _error(path, 1, "front matter is not closed with '---'")
    for field in FRONT_MATTER_FIELDS:
        if field not in front:
            _error(path, i + 1, "front matter lacks the %r field" % field)
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*(::[A-Za-z_~][A-Za-z0-9_]*)*$",
                    front["name"]):
        _error(path, 2, "name %r is not a qualified C++ name such as "
               "nbd::Client::Disconnect" % front["name"])
    if not re.match(r"^//[A-Za-z0-9_/.\-]*(:[A-Za-z0-9_.\-]+)?$",
                    front["target"]):
        _error(path, 2, "target %r is not a Bazel label such as "
               "//protocol/client" % front["target"])
    if "`" in front["summary"] or "*" in front["summary"]:
        _error(path, 2, "the summary is plain text (no markup)")
    return front, i + 1


def _parse_sections(lines, start, path):
    sections = []
    current = None
    i = start
    while i < len(lines):
        line = lines[i]
        lineno = i + 1
        if line.startswith("#"):
            m = re.match(r"^# ([A-Z][A-Z ]*[A-Z])$", line)
            if not m:
                if re.match(r"^##", line):
                    _error(path, lineno, "only '# SECTION' headings exist; "
                           "subheadings (##) are not supported")
                _error(path, lineno, "heading %r: write '# NAME' with an "
                       "upper-case section name" % line)
            current = (m.group(1), lineno, [])
            sections.append(current)
            i += 1
            continue
        if current is None:
            if line.strip():
                _error(path, lineno, "text before the first section heading")
            i += 1
            continue
        if not line.strip():
            i += 1
            continue
        block, i = _parse_block(lines, i, path)
        current[2].append(block)
    return sections


def _check_markup_line(path, lineno, line):
    if line.startswith("|"):
        _error(path, lineno, "tables are not supported")
    if line.startswith(">"):
        _error(path, lineno, "block quotes are not supported")
    if re.match(r"^(---+|\*\*\*+|___+)$", line):
        _error(path, lineno, "horizontal rules are not supported")
    if re.match(r"^\s+[-*] ", line) or re.match(r"^\s+\d{1,2}\. ", line):
        _error(path, lineno, "nested lists are not supported")
    if re.match(r"^\s*```", line):
        _error(path, lineno, "a code fence must start at column 0 and "
               "cannot be inside a list or paragraph")
    if line.startswith("* ") or line.startswith("+ "):
        _error(path, lineno, "bullet lists use '- ', not %r" % line[:2])


def _parse_block(lines, i, path):
    line = lines[i]
    lineno = i + 1
    m = FENCE.match(line)
    if m:
        lang = m.group(1).lower()
        if lang not in CODE_LANGUAGES:
            _error(path, lineno, "unknown code block language %r (known: "
                   "cpp, sh, text, python or none)" % lang)
        body = []
        i += 1
        while i < len(lines) and lines[i] != "```":
            body.append((i + 1, lines[i]))
            i += 1
        if i == len(lines):
            _error(path, lineno, "code block is not closed with ```")
        if not body:
            _error(path, lineno, "empty code block")
        return Block("code", lineno, lines=body, lang=lang), i + 1
    if BULLET.match(line) or ORDERED.match(line):
        return _parse_list(lines, i, path)
    if line.startswith("    "):
        _error(path, lineno, "indented code blocks are not supported; use "
               "a ``` fence")
    _check_markup_line(path, lineno, line)
    body = []
    while i < len(lines):
        line = lines[i]
        if (not line.strip() or line.startswith("#") or FENCE.match(line)
                or BULLET.match(line) or ORDERED.match(line)):
            break
        _check_markup_line(path, i + 1, line)
        body.append((i + 1, line))
        i += 1
    return Block("para", lineno, lines=body), i


def _parse_list(lines, i, path):
    ordered = bool(ORDERED.match(lines[i]))
    start = i + 1
    items = []
    while i < len(lines):
        line = lines[i]
        m = ORDERED.match(line) if ordered else BULLET.match(line)
        if not m:
            other = BULLET.match(line) if ordered else ORDERED.match(line)
            if other:
                _error(path, i + 1, "bullet and numbered items mixed in one "
                       "list; separate the lists with a paragraph")
            if not line.strip():
                # A blank line continues the list only if an item follows.
                j = i
                while j < len(lines) and not lines[j].strip():
                    j += 1
                nxt = lines[j] if j < len(lines) else ""
                if (ORDERED.match(nxt) if ordered else BULLET.match(nxt)):
                    i = j
                    continue
            break
        number = m.group(1) if ordered else None
        text = [(i + 1, m.group(2 if ordered else 1))]
        if not text[0][1].strip():
            _error(path, i + 1, "empty list item")
        i += 1
        while i < len(lines):
            line = lines[i]
            if (not line.strip() or line.startswith("#") or FENCE.match(line)
                    or BULLET.match(line) or ORDERED.match(line)):
                break
            _check_markup_line(path, i + 1, line)
            text.append((i + 1, line))
            i += 1
        if i < len(lines) and re.match(r"^\s*```", lines[i]):
            _error(path, i + 1, "code blocks inside list items are not "
                   "supported; end the list first")
        items.append((text[0][0], number, text))
    return Block("list", start, items=items, ordered=ordered), i


def _check_sections(sections, path, nlines):
    titles = [t for t, _, _ in sections]
    for title, line, blocks in sections:
        if title not in REQUIRED_SECTIONS and title not in OPTIONAL_SECTIONS:
            _error(path, line, "unknown section %r (required: %s; optional, "
                   "between ERRORS and SEE ALSO: %s)"
                   % (title, ", ".join(REQUIRED_SECTIONS),
                      ", ".join(OPTIONAL_SECTIONS)))
        if titles.count(title) > 1:
            _error(path, line, "section %r appears twice" % title)
        if not blocks:
            _error(path, line, "section %r is empty" % title)
    for title in REQUIRED_SECTIONS:
        if title not in titles:
            _error(path, nlines, "missing required section %r" % title)
    required = [t for t in titles if t in REQUIRED_SECTIONS]
    if required != REQUIRED_SECTIONS:
        line = next(l for t, l, _ in sections
                    if required.index(t) != REQUIRED_SECTIONS.index(t))
        _error(path, line, "sections out of order: %s (the order is %s)"
               % (", ".join(required), ", ".join(REQUIRED_SECTIONS)))
    errors_at = titles.index("ERRORS")
    see_also_at = titles.index("SEE ALSO")
    for title, line, _ in sections:
        if title in OPTIONAL_SECTIONS and not (
                errors_at < titles.index(title) < see_also_at):
            _error(path, line, "optional section %r must come between "
                   "ERRORS and SEE ALSO" % title)
    synopsis = sections[titles.index("SYNOPSIS")]
    if not any(b.kind == "code" for b in synopsis[2]):
        _error(path, synopsis[1], "SYNOPSIS needs a ```cpp code block with "
               "the declaration")
    example = sections[titles.index("EXAMPLE")]
    if not any(b.kind == "code" for b in example[2]):
        _error(path, example[1], "EXAMPLE needs a ``` code block")


# ---- Rendering -------------------------------------------------------------

def _escape_char(c):
    if c == "\\":
        return "\\e"
    if ord(c) > 126 or (ord(c) < 32):
        return "\\[u%04X]" % ord(c)
    return c


def escape_text(s):
    """Prose: backslashes and non-ASCII escaped; '-' stays a hyphen."""
    return "".join(_escape_char(c) for c in s)


def escape_code(s):
    """Literal text: ASCII minus, quotes, backquote, tilde and caret, so a
    copied snippet compiles."""
    out = []
    for c in s:
        if c == "-":
            out.append("\\-")
        elif c == "'":
            out.append("\\(aq")
        elif c == "`":
            out.append("\\(ga")
        elif c == "~":
            out.append("\\(ti")
        elif c == "^":
            out.append("\\(ha")
        else:
            out.append(_escape_char(c))
    return "".join(out)


def _font(bold, italic):
    if bold and italic:
        return "\\f(BI"
    if bold:
        return "\\fB"
    if italic:
        return "\\fI"
    return "\\fR"


def render_inline(text, path, lineno):
    """Inline markup of one logical line to troff."""
    out = []
    bold = italic = False
    i = 0
    plain = []

    def flush_plain():
        if not plain:
            return
        s = "".join(plain)
        plain.clear()
        if re.search(r"\[[^\]]*\]\([^)]*\)", s):
            _error(path, lineno, "links are not supported")
        m = HTML_TAG.search(s)
        if m:
            _error(path, lineno, "HTML is not supported: %r" % m.group(0))
        pos = 0
        for m in PROSE_REFERENCE.finditer(s):
            out.append(escape_text(s[pos:m.start()]))
            out.append("\\fB" + escape_text(m.group(1)) + _font(bold, italic)
                       + "(" + m.group(2) + ")")
            pos = m.end()
        out.append(escape_text(s[pos:]))

    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in "\\`*_[]<>#":
            plain.append(text[i + 1])
            i += 2
            continue
        if c == "`":
            # A run of N backquotes opens a span that the next run of
            # exactly N closes, so ``a`b`` holds a backquote.
            run = len(text[i:]) - len(text[i:].lstrip("`"))
            j = -1
            for m in re.finditer(r"`+", text[i + run:]):
                if len(m.group(0)) == run:
                    j = i + run + m.start()
                    break
            if j < 0:
                _error(path, lineno, "unclosed `code` span")
            code = text[i + run:j]
            if run > 1 and code.startswith(" ") and code.endswith(" ") and (
                    code.strip()):
                code = code[1:-1]
            if not code:
                _error(path, lineno, "empty `code` span")
            flush_plain()
            out.append(_font(True, italic) + escape_code(code)
                       + _font(bold, italic))
            i = j + run
            continue
        if text.startswith("**", i):
            flush_plain()
            bold = not bold
            out.append(_font(bold, italic))
            i += 2
            continue
        if c == "*":
            # A lone '*' between spaces (a multiplication, a glob) is text.
            before = text[i - 1] if i > 0 else " "
            after = text[i + 1] if i + 1 < len(text) else " "
            if before == " " and after == " ":
                plain.append(c)
                i += 1
                continue
            flush_plain()
            italic = not italic
            out.append(_font(bold, italic))
            i += 1
            continue
        plain.append(c)
        i += 1
    flush_plain()
    if bold:
        _error(path, lineno, "unclosed **bold**")
    if italic:
        _error(path, lineno, "unclosed *italic*")
    return "".join(out)


def _text_lines(lines, path):
    """Source lines of one paragraph or item -> troff text lines. The lines
    are joined first, so inline markup may span source lines; the output is
    re-wrapped at spaces (fonts carry across troff input lines)."""
    words = [line.strip() for _, line in lines if line.strip()]
    if not words:
        return []
    rendered = render_inline(" ".join(words), path, lines[0][0])
    out = []
    current = ""
    for word in rendered.split(" "):
        if current and len(current) + 1 + len(word) > 78:
            out.append(current)
            current = word
        else:
            current = word if not current else current + " " + word
    if current:
        out.append(current)
    lines = []
    for line in out:
        if not line:
            continue
        if line.startswith((".", "'")):
            line = "\\&" + line
        # troff puts two spaces after a sentence that ends an input line;
        # "\&" keeps the spacing the source has.
        if re.search(r"[.!?][)\]\"']*$", line):
            line += "\\&"
        lines.append(line)
    return lines


def _code_lines(block):
    out = []
    for _, line in block.lines:
        if not line.strip():
            out.append("\\&")
            continue
        r = escape_code(line)
        if r.startswith(".") or r.startswith("'"):
            r = "\\&" + r
        out.append(r)
    return out


def header_title(name):
    """(title, manual) for .TH: the full name and MANUAL if the header line
    fits in HEADER_WIDTH columns, else without the manual, else the name
    without its leading namespaces (the NAME section always has it all)."""
    half = HEADER_WIDTH // 2

    def fits(title, manual):
        return len(title) + len("(3)") + (len(manual) + 1) // 2 + 2 <= half

    if fits(name, MANUAL):
        return name, MANUAL
    if fits(name, ""):
        return name, ""
    parts = name.split("::")
    while len(parts) > 1 and not fits("::".join(parts), ""):
        parts = parts[1:]
    return "::".join(parts), ""


def render(page):
    """The troff text of a page."""
    path = page.path
    name = escape_text(page.name)
    title, manual = header_title(page.name)
    out = [
        '.\\" Generated by tools/man/md2man.py from %s; do not edit.'
        % escape_text(os.path.basename(path)),
        '.TH "%s" 3 "" "%s" "%s"' % (escape_text(title), SOURCE, manual),
        ".nh",
        ".ad l",
        ".SH NAME",
        "%s \\- %s" % (name, escape_text(page.front["summary"])),
    ]
    for title, _, blocks in page.sections:
        out.append('.SH "%s"' % title)
        if title == "SEE ALSO":
            refs = page.see_also()
            for n, (ref, sect) in enumerate(refs):
                sep = "," if n + 1 < len(refs) else ""
                out.append(".BR %s (%s)%s" % (escape_text(ref), sect, sep))
            continue
        for block in blocks:
            out += _render_block(block, path)
        if title == "SYNOPSIS":
            out += [
                ".PP",
                "Header \\fB%s\\fR, Bazel target \\fB%s\\fR."
                % (escape_code(page.front["header"]),
                   escape_code(page.front["target"])),
            ]
    return "\n".join(out) + "\n"


def _render_block(block, path):
    if block.kind == "code":
        return [".PP", ".RS 4", ".nf"] + _code_lines(block) + [".fi", ".RE"]
    if block.kind == "para":
        return [".PP"] + _text_lines(block.lines, path)
    out = []
    for lineno, number, text in block.items:
        joined = " ".join(t.strip() for _, t in text)
        m = TERM.match(joined) if not block.ordered else None
        # A tag longer than a line would run into its paragraph: such an
        # item stays a bullet.
        if m and len(re.sub(r"[*`]", "", m.group(1))) <= 60:
            # "**TERM** (`Code`): text" -> a tagged paragraph.
            out.append(".TP 7")
            # The tag is the one input line after .TP: never wrapped.
            tag = render_inline(m.group(1), path, lineno)
            out.append("\\&" + tag if tag.startswith((".", "'")) else tag)
            out += _text_lines([(lineno, m.group(2))], path)
        elif block.ordered:
            out.append(".IP %s. 4" % number)
            out += _text_lines(text, path)
        else:
            out.append(".IP \\(bu 2")
            out += _text_lines(text, path)
    return out


def convert(source_path):
    with open(source_path, encoding="utf-8") as f:
        text = f.read()
    return render(parse(text, source_path))


def main(argv):
    args = argv[1:]
    try:
        if args and args[0] == "--out-dir":
            if len(args) < 3:
                raise SystemExit("usage: md2man.py --out-dir DIR SOURCE...")
            out_dir = args[1]
            results = []
            for src in args[2:]:
                base = os.path.basename(src)
                if not base.endswith(".3.md"):
                    raise SourceError("%s: a source is named <page>.3.md"
                                      % src)
                results.append((os.path.join(out_dir, base[:-3]),
                                convert(src)))
        elif len(args) == 2:
            results = [(args[1], convert(args[0]))]
        else:
            sys.stderr.write(__doc__)
            return 2
    except SourceError as e:
        sys.stderr.write("md2man: %s\n" % e)
        return 1
    for out_path, troff in results:
        with open(out_path, "w", encoding="ascii") as f:
            f.write(troff)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
