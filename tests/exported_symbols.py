#!/usr/bin/env python3
"""tests/exported_symbols.py - the shared libraries export the public API, all
of it and nothing else.

    exported_symbols.py NM LIB.so HEADER... [-- LIB.so HEADER...]...

For each shared library, the names it exports (NM -D --defined-only) must be
exactly the functions declared in its installed headers, and every such
declaration must carry AD_API (autodiff/export.h): the libraries are built
with hidden visibility, so a function without the mark is not exported, and
an internal helper (ad__*, nn__*) never is.  A public name is ad_* or nn_*
with one underscore after the prefix.

Fails, naming each symbol, when a library exports a name that no header
declares (an internal leaking out), or when a declared function is not
exported (AD_API forgotten, or a declaration without a definition)."""

import re
import subprocess
import sys


def blank(text):
    """text with comments, string and character literals and preprocessor
    lines replaced by spaces (newlines kept), so offsets still match."""
    out = list(text)
    i, n = 0, len(text)
    line_start = True
    while i < n:
        c = text[i]
        if line_start and c == '#':
            j = i
            while j < n and not (text[j] == '\n' and text[j - 1] != '\\'):
                j += 1
        elif text.startswith('/*', i):
            j = text.index('*/', i + 2) + 2
        elif text.startswith('//', i):
            j = text.find('\n', i)
            j = n if j < 0 else j
        elif c in '"\'':
            j = i + 1
            while text[j] != c:
                j += 2 if text[j] == '\\' else 1
            j += 1
        else:
            if c == '\n':
                line_start = True
            elif c not in ' \t':
                line_start = False
            i += 1
            continue
        for k in range(i, j):
            if out[k] != '\n':
                out[k] = ' '
        i = j
    return ''.join(out)


def declarations(text):
    """[(name, statement)] for each function declared at file scope (the
    `extern "C" {` of C++ guards does not count as a scope)."""
    b = blank(text)
    # extern "C" { (its string already blanked) and its closing }
    b = re.sub(r'\bextern\s*\{', lambda m: ' ' * len(m.group(0)), b)
    decls = []
    depth = 0      # of (), [] and {} within the current statement
    start = None
    for i, c in enumerate(b):
        if start is None:
            if c.isspace() or c == ';':
                continue
            if c == '}' and depth == 0:  # closes extern "C" {
                continue
            start = i
        if c in '([{':
            depth += 1
        elif c in ')]}':
            depth -= 1
            if c == '}' and depth == 0 and not re.match(r'\s*;', b[i + 1:i + 50]) \
                    and not re.match(r'\s*[A-Za-z_]', b[i + 1:i + 50]):
                start = None  # a function body: a definition, not exported
        elif c == ';' and depth == 0:
            stmt = b[start:i]
            start = None
            if re.match(r'\s*(typedef|static)\b', stmt):
                continue
            # the declarator: the first identifier at depth 0 followed by '('
            d = 0
            for m in re.finditer(r'[()]|[A-Za-z_]\w*', stmt):
                t = m.group(0)
                if t == '(':
                    d += 1
                elif t == ')':
                    d -= 1
                elif d == 0 and t != '__attribute__' and re.match(r'\s*\(', stmt[m.end():]):
                    decls.append((t, stmt))
                    break
    return decls


def main(argv):
    nm, groups = argv[0], [[]]
    for a in argv[1:]:
        if a == '--':
            groups.append([])
        else:
            groups[-1].append(a)
    problems = []
    for group in groups:
        lib, headers = group[0], group[1:]
        declared = {}
        for h in headers:
            with open(h, encoding='utf-8') as f:
                for name, stmt in declarations(f.read()):
                    if not re.match(r'(ad|nn)_[A-Za-z0-9]', name):
                        problems.append(f'{h}: {name} is not a public name (ad_*, nn_*)')
                    elif not re.match(r'\s*AD_API\b', stmt):
                        problems.append(f'{h}: {name} is declared without AD_API')
                    declared[name] = h
        out = subprocess.run([nm, '-D', '--defined-only', lib], check=True,
                             capture_output=True, text=True).stdout
        exported = set()
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 2:
                exported.add(parts[-1].split('@')[0])
        libname = lib.rsplit('/', 1)[-1]
        for name in sorted(exported - set(declared)):
            problems.append(f'{libname} exports {name}, which no installed header declares')
        for name in sorted(set(declared) - exported):
            problems.append(f'{libname} does not export {name} ({declared[name]})')
        print(f'{libname}: {len(exported)} exported, {len(declared)} declared in '
              f'{len(headers)} headers')
    for p in problems:
        print('FAIL:', p)
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
