#!/usr/bin/env python3
"""Doxygen input filter: reads the headers' plain C comments as documentation.

The public headers are documented with ordinary /* ... */ comments written
to be read in the header itself, and they stay the single source of the
reference.  Doxygen reads only /** ... */ (and /*!, ///) as documentation,
so docs/Doxyfile runs every header through this filter, which rewrites the
comments on the fly (the files themselves are not touched):

  - the first comment of the file ("autodiff/tape.h - the tape: ...") becomes
    the file's documentation (\\file);
  - a section rule, /* ---- grad mode ---- ... */, becomes a named member
    group (\\name) holding the declarations that follow, up to the next rule
    or the end of the header; the rest of the rule's comment is the group's
    description;
  - any other comment that starts a line becomes /** (it documents the
    declaration that follows), and a comment after code on the same line
    becomes /**< (it documents that member, enumerator or declaration);
  - inside a comment, lines indented deeper than its text (code examples,
    formulas, tables) are kept as they are (\\verbatim), and characters
    doxygen would take for commands or HTML (a backslash, <type>) are
    escaped.

The output has exactly as many lines as the input, so doxygen's line
numbers and warnings still point into the real header.

    doxygen_filter.py HEADER   -> the filtered header on stdout
"""

import re
import sys

RULE = re.compile(r"^/\* -{3,} (.*?)\s*-*\s*(\*/)?\s*$")
HTML_TAGS = {"a", "b", "i", "em", "code", "pre", "br", "p", "tt", "sub", "sup", "ul", "li"}


def find_comments(lines):
    """[(first line, column, last line)] of each /* */ comment, skipping
    string and character literals and // comments."""
    comments = []
    n, c, state = 0, 0, None
    while n < len(lines):
        line = lines[n]
        if c >= len(line):
            n, c = n + 1, 0
            continue
        ch = line[c]
        if state in ('"', "'"):
            if ch == "\\":
                c += 2
                continue
            if ch == state:
                state = None
            c += 1
        elif line.startswith("//", c):
            n, c = n + 1, 0
        elif line.startswith("/*", c):
            first, col = n, c
            end = line.find("*/", c + 2)
            while end < 0 and n + 1 < len(lines):
                n += 1
                end = lines[n].find("*/")
            comments.append((first, col, n))
            c = end + 2 if end >= 0 else len(lines[n])
        else:
            if ch in ('"', "'"):
                state = ch
            c += 1
    return comments


def escape(text):
    """Escapes what doxygen would read as a command or an HTML tag, outside
    "quoted strings" (which doxygen prints as they are)."""
    parts = text.split('"')
    for i in range(0, len(parts), 2):
        part = parts[i].replace("\\", "\\\\")
        parts[i] = re.sub(r"<(/?)([A-Za-z_][A-Za-z0-9_]*)>",
                          lambda m: m.group(0) if m.group(2).lower() in HTML_TAGS
                          else "\\<" + m.group(1) + m.group(2) + "\\>", part)
    return '"'.join(parts)


def body(lines, first, col, last):
    """Escapes the text of a comment and marks its indented runs verbatim."""
    # Text of each line: after the opener on the first line, after the
    # leading '*' on the others.  Only comments whose continuation lines
    # start with '*' get verbatim runs (their indentation is meaningful).
    starred = all(re.match(r"^\s*\*", lines[k]) for k in range(first + 1, last + 1))
    texts = []
    for k in range(first, last + 1):
        line = lines[k]
        if k == first:
            texts.append((col + 2, line[col + 2:]))
        else:
            m = re.match(r"^(\s*\*(?!/))?", line) if starred else None
            p = m.end() if m else 0
            texts.append((p, line[p:]))
    base = None
    for p, t in texts:
        t = t.split("*/")[0]
        if t.strip():
            ind = len(t) - len(t.lstrip())
            base = ind if base is None else min(base, ind)
    in_verbatim = False
    for i, (p, t) in enumerate(texts):
        k = first + i
        content, sep, rest = t.partition("*/")
        indented = starred and base is not None and content.strip() and \
            len(content) - len(content.lstrip()) >= base + 2 and i > 0
        if indented and not in_verbatim:
            # open on the previous line, so this one keeps its indentation
            lines[k - 1] = lines[k - 1].rstrip() + " \\verbatim"
            in_verbatim = True
        elif not indented and in_verbatim and content.strip():
            lines[k - 1] = lines[k - 1].rstrip() + " \\endverbatim"
            in_verbatim = False
        verbatim_line = in_verbatim
        if not in_verbatim:
            content = escape(content)
        if sep and in_verbatim:
            content = content.rstrip() + " \\endverbatim "
            in_verbatim = False
        if verbatim_line and i > 0:
            # Doxygen keeps a line's leading '*' inside \verbatim: drop it,
            # and the indentation that made it verbatim.
            ind = len(content) - len(content.lstrip())
            lines[k] = content[min(base + 2, ind):] + sep + rest
        else:
            lines[k] = lines[k][:p] + content + sep + rest


def filter_header(text):
    lines = text.split("\n")
    comments = find_comments(lines)
    group_open = False
    openers = {}  # line -> (column, replacement of "/*")
    closers = {}  # line -> text appended after the comment's "*/"
    for idx, (first, col, last) in enumerate(comments):
        line = lines[first]
        if line.startswith("/**", col) or line.startswith("/*!", col):
            continue
        code_before = line[:col].strip() != ""
        rule = RULE.match(line[col:]) if not code_before else None
        if idx == 0 and not code_before:
            openers[first] = (col, "/** \\file ")
            # "/* nn/optim.h - optimisers, ..." -> "\file nn/optim.h optimisers, ..."
            # (a "- " would start a list)
            lines[first] = line[:col] + "/*" + re.sub(r"^(\S+) - ", r"\1 ", line[col + 2:].lstrip())
        elif rule:
            title = rule.group(1).strip(" -")
            lines[first] = line[:col] + "/* " + title + (" */" if rule.group(2) else "")
            openers[first] = (col, ("/** \\} */ " if group_open else "") + "/** \\name ")
            closers[last] = (col + 2 if last == first else 0, " /** \\{ */")
            group_open = True
        else:
            openers[first] = (col, "/**<" if code_before else "/**")
        body(lines, first, col, last)
    # The last group ends before the closing extern "C" block, or at the end.
    if group_open:
        end = len(lines) - 1
        for k in range(len(lines) - 1, 0, -1):
            if lines[k].startswith("#ifdef __cplusplus") and k + 1 < len(lines) and \
                    lines[k + 1].startswith("}"):
                end = k - 1
                break
        lines[end] = lines[end] + " /** \\} */"
    for k, (start, text) in closers.items():
        pos = lines[k].find("*/", start)
        lines[k] = lines[k][:pos + 2] + text + lines[k][pos + 2:]
    for k, (col, opener) in openers.items():
        line = lines[k]
        assert line.startswith("/*", col)
        lines[k] = line[:col] + opener + line[col + 2:]
    return "\n".join(lines)


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        sys.stdout.write(filter_header(f.read()))


if __name__ == "__main__":
    main()
