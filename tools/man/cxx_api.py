"""The public functions a C++ header declares, for the reference page check.

parse_header(text) returns {qualified name: Function} for every function
and method a user of the header can call:

  - free functions at namespace scope (not in an anonymous namespace, nor
    in one named internal or detail);
  - public methods of classes and structs (nested ones too), static ones
    included, inline bodies or not, each overload set under one name.

Left out: constructors, destructors, operators (conversion operators too),
deleted and defaulted functions, friends, using/typedef aliases, variables
(a std::function<void(int)> member is not a method), out-of-class member
definitions (Foo::Bar() { ... }) and macros. Class names that have a
public, non-deleted constructor are in `constructible`.

The parser knows the shapes clang-format gives Google-style headers:
declarations over several lines, default arguments with calls and braces,
templates, trailing const/override/noexcept, = delete, = default, and
member initializers. It does not expand macros or follow #includes.
"""
import re

KEYWORDS_NOT_NAMES = {
    "if", "for", "while", "switch", "return", "sizeof", "alignof",
    "decltype", "static_assert", "noexcept", "void", "int", "bool", "char",
    "unsigned", "signed", "long", "short", "float", "double", "auto",
    "requires", "alignas", "explicit", "throw",
}
HIDDEN_NAMESPACES = {"internal", "detail", ""}


class Function:
    def __init__(self, qualname, scope, line, static, is_method):
        self.qualname = qualname
        self.scope = scope          # enclosing namespace or class
        self.line = line            # first declaration
        self.static = static
        self.is_method = is_method
        self.overloads = 1

    def __repr__(self):
        return "Function(%s)" % self.qualname


class Api:
    def __init__(self):
        self.functions = {}       # qualname -> Function
        self.classes = set()      # every class or struct defined
        self.constructible = set()  # classes with a public constructor

    def add(self, fn):
        if fn.qualname in self.functions:
            self.functions[fn.qualname].overloads += 1
        else:
            self.functions[fn.qualname] = fn

    def methods_of(self, cls):
        """Qualified names of the public methods of class `cls` (not of its
        nested classes)."""
        return sorted(q for q, f in self.functions.items()
                      if f.is_method and f.scope == cls)


TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<num>[0-9][A-Za-z0-9_.']*)
  | (?P<punct>::|->|[{}()\[\]<>;:,=~&*+\-!/%|^?.#])
""", re.X)


LITERAL = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'')


def _strip(text):
    """Comments and preprocessor lines blanked out, newlines kept."""
    out = []
    i = 0
    n = len(text)
    at_line_start = True
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
            continue
        if c == "#" and at_line_start:
            # A directive, with its backslash continuations.
            j = i
            while True:
                k = text.find("\n", j)
                if k < 0:
                    k = n
                    break
                if text[k - 1] == "\\":
                    out.append("\n")
                    j = k + 1
                    continue
                break
            i = k
            continue
        if c in "\"'":
            m = LITERAL.match(text, i)
            if m:
                out.append(m.group(0))
                i = m.end()
                at_line_start = False
                continue
        if c == "R" and text.startswith('R"', i):
            m = re.compile(r'R"([^(]*)\((.*?)\)\1"', re.S).match(text, i)
            if m:
                out.append('""' + "\n" * m.group(0).count("\n"))
                i = m.end()
                continue
        out.append(c)
        if c == "\n":
            at_line_start = True
        elif not c.isspace():
            at_line_start = False
        i += 1
    return "".join(out)


class Tok:
    __slots__ = ("kind", "text", "line")

    def __init__(self, kind, text, line):
        self.kind, self.text, self.line = kind, text, line

    def __repr__(self):
        return self.text


def tokenize(text):
    text = _strip(text)
    toks = []
    line = 1
    pos = 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m:
            raise ValueError("line %d: cannot tokenize %r"
                             % (line, text[pos:pos + 20]))
        kind = m.lastgroup
        if kind != "ws":
            toks.append(Tok(kind, m.group(0), line))
        line += m.group(0).count("\n")
        pos = m.end()
    return toks


def _skip_balanced(toks, i, open_, close):
    """i is at `open_`; returns the index after its matching `close`."""
    depth = 0
    while i < len(toks):
        t = toks[i].text
        if t == open_:
            depth += 1
        elif t == close:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError("unbalanced %s" % open_)


def _skip_template_params(decl, i):
    """decl[i] is '<' after `template`; returns the index after '>'."""
    depth = 0
    while i < len(decl):
        t = decl[i].text
        if t in "([{":
            close = {"(": ")", "[": "]", "{": "}"}[t]
            i = _skip_balanced(decl, i, t, close)
            continue
        if t == "<":
            depth += 1
        elif t == ">":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return i


def _declarator_paren(decl):
    """Index of the '(' that opens a function's parameter list in `decl`
    (tokens of one declaration), or None if it declares no function."""
    angle = 0
    i = 0
    if decl and decl[0].text == "template":
        i = _skip_template_params(decl, 1)
    while i < len(decl):
        t = decl[i]
        if (t.text == "[" and i + 1 < len(decl) and decl[i + 1].text == "["):
            i = _skip_balanced(decl, i, "[", "]")  # [[attribute]]
            continue
        if t.text == "operator":
            return None
        if t.text == "=" and angle == 0:
            return None  # a variable (or alias) with an initializer
        if t.text == "<" and (decl[i - 1].kind == "ident" if i > 0 else False):
            angle += 1
        elif t.text == ">" and angle > 0:
            angle -= 1
        elif t.text in "[{":
            if angle == 0:
                return None
        elif t.text == "(":
            if angle == 0:
                return i
            i = _skip_balanced(decl, i, "(", ")")
            continue
        i += 1
    return None


def _classify(decl, kind, cls_name):
    """(unqualified name, static) of the callable `decl` declares, ("ctor",
    False) for a constructor of `cls_name`, or None. `kind` is "namespace"
    or "class"."""
    if not decl:
        return None
    first = decl[0].text
    if first in ("using", "typedef", "friend", "static_assert", "namespace",
                 "enum"):
        return None
    p = _declarator_paren(decl)
    if p is None or p == 0:
        return None
    name_tok = decl[p - 1]
    if name_tok.kind != "ident" or name_tok.text in KEYWORDS_NOT_NAMES:
        return None
    if p >= 2 and decl[p - 2].text == "::":
        return None  # Foo::Bar(...): defines a member declared elsewhere
    if p >= 2 and decl[p - 2].text == "~":
        return None  # destructor
    if any(t.text in ("friend", "typedef", "using") for t in decl[:p]):
        return None
    close = _skip_balanced(decl, p, "(", ")")
    tail = [t.text for t in decl[close:]]
    is_ctor = kind == "class" and name_tok.text == cls_name
    for j, t in enumerate(tail):
        if t != "=" or j + 1 >= len(tail):
            continue
        # Deleted: not callable. Defaulted: no page of its own, but a
        # defaulted public constructor (Handle() = default) still makes the
        # class constructible.
        if tail[j + 1] == "delete" or (tail[j + 1] == "default" and
                                       not is_ctor):
            return None
    if is_ctor:
        return ("ctor", False)
    # A macro invocation at namespace scope (FOO(x);) has no return type.
    before = [t for t in decl[:p - 1] if t.text not in (
        "inline", "constexpr", "static", "explicit", "virtual", "extern",
        "[", "]", "nodiscard", "maybe_unused", "deprecated")]
    if not before:
        return None
    static = any(t.text == "static" for t in decl[:p])
    return (name_tok.text, static)


def parse_header(text):
    """The Api of one header's text (see the module comment)."""
    toks = tokenize(text)
    api = Api()
    _parse_scope(toks, 0, api, scope="", kind="namespace", cls_name=None,
                 access="public", visible=True)
    return api


def _parse_scope(toks, i, api, scope, kind, cls_name, access, visible):
    """Parses declarations from toks[i] to the closing '}' of this scope;
    returns the index after it (or len(toks) at the top level)."""
    decl = []
    parens = 0  # depth of ( [ in `decl`: braces there are default arguments

    def qualify(name):
        return name if not scope else scope + "::" + name

    def finish(decl):
        result = _classify(decl, kind, cls_name)
        if result is None:
            return
        name, static = result
        public = access == "public"
        if name == "ctor":
            if public and visible:
                api.constructible.add(scope)
            return
        if visible and public:
            api.add(Function(qualify(name), scope, decl[0].line, static,
                             kind == "class"))

    while i < len(toks):
        t = toks[i]
        if t.text == "}":
            if decl:
                finish(decl)
            return i + 1
        if t.text == ";":
            finish(decl)
            decl = []
            parens = 0
            i += 1
            continue
        if (kind == "class" and not decl and t.text in ("public", "private",
                                                        "protected")
                and i + 1 < len(toks) and toks[i + 1].text == ":"):
            access = t.text
            i += 2
            continue
        if t.text == "{" and parens > 0:
            j = _skip_balanced(toks, i, "{", "}")
            decl.extend(toks[i:j])
            i = j
            continue
        if t.text in ("(", "["):
            parens += 1
        elif t.text in (")", "]"):
            parens -= 1
        if t.text == "{":
            i = _open_brace(toks, i, decl, api, scope, kind, cls_name,
                            access, visible, finish)
            if i < 0:  # a body or a nested scope ended the declaration
                i = -i
                decl = []
                parens = 0
            continue
        decl.append(t)
        i += 1
    if decl:
        finish(decl)
    return i


def _open_brace(toks, i, decl, api, scope, kind, cls_name, access, visible,
                finish):
    """Handles the '{' at toks[i] inside `decl`. Returns -(next index) if
    the declaration ended (function body, namespace, class body with its
    trailing ';' still to come), else the next index (an initializer)."""
    texts = [t.text for t in decl]
    start = 0
    if texts and texts[0] == "template":
        start = _skip_template_params(decl, 1)
    head = texts[start:]
    # namespace a::b { / inline namespace x { / namespace { / extern "C" {
    if "namespace" in head[:2] and "(" not in head:
        k = head.index("namespace")
        name = "".join(head[k + 1:])
        inner = scope + "::" + name if scope and name else (scope or name)
        hidden = (not visible or name in HIDDEN_NAMESPACES
                  or any(p in HIDDEN_NAMESPACES for p in name.split("::")))
        end = _parse_scope(toks, i + 1, api, inner, "namespace", None,
                           "public", not hidden)
        return -end
    if head[:1] == ["extern"] and len(decl) == 2 and decl[1].kind == "str":
        end = _parse_scope(toks, i + 1, api, scope, "namespace", None,
                           "public", visible)
        return -end
    if "enum" in head[:1]:
        return _skip_balanced(toks, i, "{", "}")
    cls_kw = next((k for k, x in enumerate(head) if x in ("class", "struct",
                                                         "union")), None)
    if cls_kw is not None and "(" not in head[:cls_kw] and (
            "=" not in head[:cls_kw]):
        # class NAME [final] [: bases] {
        name = None
        for k, x in enumerate(head[cls_kw + 1:]):
            if x == ":" or x == "{":
                break
            if re.match(r"^[A-Za-z_]\w*$", x) and x not in ("final",
                                                             "alignas"):
                name = x
        inner = scope + "::" + name if scope and name else (name or scope)
        default = "private" if head[cls_kw] == "class" else "public"
        if name:
            api.classes.add(inner)
        end = _parse_scope(toks, i + 1, api, inner, "class", name, default,
                           visible and access == "public")
        # `} var;` or `};`: skip to the ';'.
        while end < len(toks) and toks[end].text != ";":
            end += 1
        return -(end + 1)
    p = _declarator_paren(decl)
    if p is not None:
        tail = decl[_skip_balanced(decl, p, "(", ")"):]
        in_init_list = any(t.text == ":" for t in tail)
        if in_init_list and (tail[-1].kind == "ident" or tail[-1].text == ">"):
            # `member_{...}` inside a constructor's initializer list.
            j = _skip_balanced(toks, i, "{", "}")
            decl.extend(toks[i:j])
            return j
        # A function body.
        finish(decl)
        return -_skip_balanced(toks, i, "{", "}")
    # A brace initializer: `int x{0};`, `Foo y = {};`
    j = _skip_balanced(toks, i, "{", "}")
    decl.extend(toks[i:j])
    return j
