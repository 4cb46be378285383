/* autodiff/ffi_sig.c - parsing foreign-function signatures.
 *
 * Two grammars share one result (ad_ffi_sig):
 *
 *   short:  RET '(' {ARG [',']} ')'          one letter per type
 *   C:      TYPE [NAME | '(' '*' [NAME] ')'] '(' PARAMS ')' [';']
 *           PARAMS = 'void' | empty | PARAM {',' PARAM}
 *           PARAM  = TYPE [NAME] ['[' [digits] ']']
 *           TYPE   = qualifiers and one base type (double, float, int,
 *                    long [int], size_t, void), then at most one '*'
 *                    followed by qualifiers
 *
 * A string is in the short grammar when its first word is one letter, so
 * "d(dd)" and "double (double, double)" never compete.  The parser is a
 * hand-written recursive descent over a tiny tokenizer; it must accept any
 * byte string without reading past its end (it is fuzzed), so every read
 * goes through peek(), which stops at the terminating NUL. */
#include "ffi.h"

#include <stdio.h>
#include <string.h>

typedef enum { T_END, T_IDENT, T_NUM, T_PUNCT, T_BAD } tok_kind;

typedef struct tok {
    tok_kind kind;
    int col;      /* 1-based column of the first character */
    const char *s;
    int len;
} tok;

typedef struct parser {
    const char *src;
    size_t pos;
    tok t; /* the current (not yet consumed) token */
    char *err;
    size_t errlen;
    bool failed;
} parser;

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* The source, quoted for a message: long strings are cut and bytes that
 * would garble a terminal are shown as '?'. */
static void quote(const char *src, char *buf, size_t size)
{
    size_t n = 0, max = size > 4 ? size - 4 : 0;
    for (size_t i = 0; src[i] && n < max; i++) {
        unsigned char c = (unsigned char)src[i];
        buf[n++] = (c < 0x20 || c >= 0x7f || c == '"') ? '?' : (char)c;
        if (i == 59 && src[i + 1]) {
            if (n + 3 < size) memcpy(buf + n, "...", 3), n += 3;
            break;
        }
    }
    if (size) buf[n < size ? n : size - 1] = '\0';
}

static int fail_at(parser *p, int col, const char *what)
{
    if (p->failed) return -1; /* keep the first, most precise message */
    char q[72];
    quote(p->src, q, sizeof q);
    snprintf(p->err, p->errlen, "%s at column %d in \"%s\"", what, col, q);
    p->failed = true;
    return -1;
}

static void next(parser *p)
{
    const char *s = p->src;
    while (is_space(s[p->pos])) p->pos++;
    tok t = {T_END, (int)p->pos + 1, s + p->pos, 0};
    char c = s[p->pos];
    if (c == '\0') {
        p->t = t;
        return;
    }
    size_t start = p->pos;
    if (is_alpha(c)) {
        t.kind = T_IDENT;
        while (is_alpha(s[p->pos]) || is_digit(s[p->pos])) p->pos++;
    } else if (is_digit(c)) {
        t.kind = T_NUM;
        while (is_digit(s[p->pos])) p->pos++;
    } else {
        t.kind = strchr("()*,[];", c) ? T_PUNCT : T_BAD;
        p->pos++;
    }
    size_t len = p->pos - start;
    t.len = len > 1000 ? 1000 : (int)len;
    p->t = t;
}

static bool is_punct(const parser *p, char c)
{
    return p->t.kind == T_PUNCT && p->t.s[0] == c;
}
static bool is_word(const parser *p, const char *w)
{
    size_t n = strlen(w);
    return p->t.kind == T_IDENT && (size_t)p->t.len == n && !strncmp(p->t.s, w, n);
}

/* "expected ')' but found 'x'" style: names what was found, since the
 * column alone is hard to read in a long prototype. */
static int expected(parser *p, const char *what)
{
    char msg[160];
    if (p->t.kind == T_END)
        snprintf(msg, sizeof msg, "expected %s but the prototype ended", what);
    else
        snprintf(msg, sizeof msg, "expected %s", what);
    return fail_at(p, p->t.col, msg);
}

/* ---- C grammar -------------------------------------------------------------------- */

enum { B_NONE, B_VOID, B_DOUBLE, B_FLOAT, B_INT, B_LONG, B_SIZE };

static const char *const qualifiers[] = {"const", "volatile", "restrict", "__restrict",
                                         "__restrict__", "signed", NULL};
static const char *const rejected[] = {"char", "short", "unsigned", "_Bool", "bool",
                                       "struct", "union", "enum", "int64_t", "int32_t",
                                       "uint64_t", "complex", "_Complex", NULL};

static bool in_list(const parser *p, const char *const *list)
{
    for (int i = 0; list[i]; i++)
        if (is_word(p, list[i])) return true;
    return false;
}

/* True when the current word is one the type grammar knows, so it cannot
 * be a parameter's name ("double double" is a missing comma, not a name). */
static bool is_keyword(const parser *p)
{
    static const char *const bases[] = {"void", "double", "float", "int", "long", "size_t", NULL};
    return in_list(p, qualifiers) || in_list(p, bases) || in_list(p, rejected);
}

/* Reads one type; *out is the ad_ctype.  The base type may be preceded and
 * followed by qualifiers ("double const *"); "long int" is long. */
static int parse_type(parser *p, ad_ctype *out, int *col)
{
    int base = B_NONE, stars = 0;
    *col = p->t.col;
    for (;;) {
        if (p->t.kind != T_IDENT) break;
        if (in_list(p, qualifiers)) {
            next(p);
            continue;
        }
        int b = is_word(p, "void") ? B_VOID : is_word(p, "double") ? B_DOUBLE
              : is_word(p, "float") ? B_FLOAT : is_word(p, "int") ? B_INT
              : is_word(p, "long") ? B_LONG : is_word(p, "size_t") ? B_SIZE : B_NONE;
        if (b == B_NONE) {
            if (base != B_NONE && !in_list(p, rejected)) break; /* a name */
            char msg[96];
            snprintf(msg, sizeof msg, "unsupported type '%.*s' (double, float, int, long, "
                                      "size_t, void)", p->t.len > 40 ? 40 : p->t.len, p->t.s);
            return fail_at(p, p->t.col, msg);
        }
        if (base == B_LONG && (b == B_INT || b == B_DOUBLE || b == B_LONG)) {
            if (b != B_INT)
                return fail_at(p, p->t.col, b == B_DOUBLE ? "unsupported type 'long double'"
                                                          : "unsupported type 'long long'");
            next(p); /* long int */
            continue;
        }
        if (base != B_NONE) break; /* a second type word: the caller reports it */
        base = b;
        next(p);
    }
    if (base == B_NONE) return expected(p, "a type");
    while (is_punct(p, '*')) {
        stars++;
        next(p);
        while (p->t.kind == T_IDENT && in_list(p, qualifiers)) next(p);
    }
    ad_ctype t = AD_C_VOID;
    bool ok = true;
    if (stars == 0)
        t = base == B_VOID ? AD_C_VOID : base == B_DOUBLE ? AD_C_DOUBLE
          : base == B_FLOAT ? AD_C_FLOAT : base == B_INT ? AD_C_INT
          : base == B_LONG ? AD_C_LONG : AD_C_SIZE_T;
    else if (stars == 1 && (base == B_DOUBLE || base == B_FLOAT))
        t = base == B_DOUBLE ? AD_C_DOUBLE_PTR : AD_C_FLOAT_PTR;
    else
        ok = false;
    if (!ok)
        return fail_at(p, *col, "unsupported pointer type (only double * and float * arrays)");
    *out = t;
    return 0;
}

/* An optional name: copied into name (if not NULL) when present. */
static void parse_name(parser *p, char *name, size_t size)
{
    if (p->t.kind != T_IDENT || is_keyword(p)) return;
    if (name) snprintf(name, size, "%.*s", p->t.len, p->t.s);
    next(p);
}

static int parse_param(parser *p, ad_ffi_sig *sig)
{
    ad_ctype t;
    int col;
    if (parse_type(p, &t, &col)) return -1;
    parse_name(p, NULL, 0);
    if (is_punct(p, '[')) { /* double x[] and double x[3] are pointers */
        next(p);
        if (p->t.kind == T_NUM) next(p);
        if (!is_punct(p, ']')) return expected(p, "']'");
        next(p);
        if (t == AD_C_DOUBLE || t == AD_C_FLOAT)
            t = t == AD_C_DOUBLE ? AD_C_DOUBLE_PTR : AD_C_FLOAT_PTR;
        else
            return fail_at(p, col, "unsupported array type (only double and float arrays)");
    }
    if (t == AD_C_VOID) return fail_at(p, col, "a parameter cannot be void");
    if (sig->nargs == AD_FFI_MAX_ARGS)
        return fail_at(p, col, "too many parameters (at most 16)");
    sig->args[sig->nargs++] = t;
    return 0;
}

static int parse_c(parser *p, ad_ffi_sig *sig)
{
    int col;
    if (parse_type(p, &sig->ret, &col)) return -1;
    parse_name(p, sig->name, sizeof sig->name);
    if (!is_punct(p, '(')) return expected(p, "'('");
    next(p);
    if (is_punct(p, '*')) { /* a function pointer declarator: double (*f)(double) */
        next(p);
        parse_name(p, sig->name, sizeof sig->name);
        if (!is_punct(p, ')')) return expected(p, "')'");
        next(p);
        if (!is_punct(p, '(')) return expected(p, "'('");
        next(p);
    }
    if (is_word(p, "void")) {
        /* (void) is no parameters; void * or void x is an error below */
        parser save = *p;
        next(p);
        if (is_punct(p, ')')) goto close;
        *p = save;
    }
    if (!is_punct(p, ')'))
        for (;;) {
            if (parse_param(p, sig)) return -1;
            if (is_punct(p, ')')) break;
            if (!is_punct(p, ',')) return expected(p, "',' or ')'");
            next(p);
        }
close:
    next(p);
    if (is_punct(p, ';')) next(p);
    if (p->t.kind != T_END) return fail_at(p, p->t.col, "unexpected text after the prototype");
    return 0;
}

/* ---- short grammar ------------------------------------------------------------------- */

static int letter_type(char c, ad_ctype *t)
{
    switch (c) {
    case 'v': *t = AD_C_VOID; return 0;
    case 'd': *t = AD_C_DOUBLE; return 0;
    case 'f': *t = AD_C_FLOAT; return 0;
    case 'i': *t = AD_C_INT; return 0;
    case 'l': *t = AD_C_LONG; return 0;
    case 'z': *t = AD_C_SIZE_T; return 0;
    case 'D': *t = AD_C_DOUBLE_PTR; return 0;
    case 'F': *t = AD_C_FLOAT_PTR; return 0;
    default: return -1;
    }
}

static int parse_short(parser *p, ad_ffi_sig *sig)
{
    const char *s = p->src;
    size_t i = 0;
    while (is_space(s[i])) i++;
    if (letter_type(s[i], &sig->ret))
        return fail_at(p, (int)i + 1, "unknown return type letter (d f i l v)");
    i++;
    while (is_space(s[i])) i++;
    if (s[i] != '(') return fail_at(p, (int)i + 1, "expected '('");
    i++;
    for (;;) {
        while (is_space(s[i]) || s[i] == ',') i++;
        if (s[i] == ')') break;
        if (s[i] == '\0') return fail_at(p, (int)i + 1, "expected ')' but the signature ended");
        ad_ctype t;
        if (letter_type(s[i], &t) || t == AD_C_VOID)
            return fail_at(p, (int)i + 1, "unknown argument type letter (d f i l z D F)");
        if (sig->nargs == AD_FFI_MAX_ARGS)
            return fail_at(p, (int)i + 1, "too many parameters (at most 16)");
        sig->args[sig->nargs++] = t;
        i++;
    }
    i++;
    while (is_space(s[i])) i++;
    if (s[i] != '\0') return fail_at(p, (int)i + 1, "unexpected text after the signature");
    return 0;
}

int ad_ffi_parse(const char *src, ad_ffi_sig *out, char *err, size_t errlen)
{
    char dummy[1];
    if (!err || errlen == 0) err = dummy, errlen = sizeof dummy;
    err[0] = '\0';
    if (!out) {
        snprintf(err, errlen, "no result struct");
        return -1;
    }
    memset(out, 0, sizeof *out);
    if (!src) {
        snprintf(err, errlen, "the signature is NULL");
        return -1;
    }
    parser p = {.src = src, .err = err, .errlen = errlen};
    next(&p);
    if (p.t.kind == T_END) return fail_at(&p, 1, "empty signature");
    int rc = p.t.kind == T_IDENT && p.t.len == 1 ? parse_short(&p, out) : parse_c(&p, out);
    if (rc) memset(out, 0, sizeof *out);
    return rc;
}

/* ---- classification and printing ---------------------------------------------------- */

const char *ad_ffi_type_name(ad_ctype t)
{
    switch (t) {
    case AD_C_VOID: return "void";
    case AD_C_DOUBLE: return "double";
    case AD_C_FLOAT: return "float";
    case AD_C_INT: return "int";
    case AD_C_LONG: return "long";
    case AD_C_SIZE_T: return "size_t";
    case AD_C_DOUBLE_PTR: return "const double *";
    case AD_C_FLOAT_PTR: return "const float *";
    }
    return "?";
}

void ad_ffi_format(const ad_ffi_sig *sig, char *buf, size_t size)
{
    if (!buf || !size) return;
    if (!sig) {
        buf[0] = '\0';
        return;
    }
    size_t n = (size_t)snprintf(buf, size, "%s (", ad_ffi_type_name(sig->ret));
    for (int i = 0; i < sig->nargs && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%s", i ? ", " : "",
                              ad_ffi_type_name(sig->args[i]));
    if (n < size) snprintf(buf + n, size - n, ")");
}

static bool is_ptr(ad_ctype t) { return t == AD_C_DOUBLE_PTR || t == AD_C_FLOAT_PTR; }
static bool is_scalar(ad_ctype t)
{
    return t == AD_C_DOUBLE || t == AD_C_FLOAT || t == AD_C_INT || t == AD_C_LONG;
}

int ad_ffi_classify(ad_ffi_sig *sig, char *err, size_t errlen)
{
    char dummy[1];
    if (!err || errlen == 0) err = dummy, errlen = sizeof dummy;
    err[0] = '\0';
    if (!sig) return snprintf(err, errlen, "the signature is NULL"), -1;
    char s[200];
    ad_ffi_format(sig, s, sizeof s);
    bool any_ptr = false;
    for (int i = 0; i < sig->nargs; i++) any_ptr |= is_ptr(sig->args[i]);
    if (sig->ret == AD_C_VOID)
        return snprintf(err, errlen, "\"%s\" returns void; a function to differentiate "
                                     "returns double, float or int", s), -1;
    if (sig->nargs == 0)
        return snprintf(err, errlen, "\"%s\" takes no arguments: nothing to differentiate", s), -1;
    if (any_ptr) {
        ad_ctype elem = sig->args[0] == AD_C_DOUBLE_PTR ? AD_C_DOUBLE : AD_C_FLOAT;
        if (sig->nargs != 2 || !is_ptr(sig->args[0]) || sig->ret != elem ||
            (sig->args[1] != AD_C_INT && sig->args[1] != AD_C_LONG && sig->args[1] != AD_C_SIZE_T))
            return snprintf(err, errlen, "\"%s\": a vector function is T (const T *, int) "
                                         "with T double or float (the length may be long "
                                         "or size_t)", s), -1;
        sig->form = AD_FFI_VECTOR;
        return 0;
    }
    if (!is_scalar(sig->ret))
        return snprintf(err, errlen, "\"%s\": the result must be double, float, int or long",
                        s), -1;
    for (int i = 0; i < sig->nargs; i++)
        if (!is_scalar(sig->args[i]))
            return snprintf(err, errlen, "\"%s\": argument %d is %s; size_t is only for the "
                                         "length of a vector function", s, i,
                            ad_ffi_type_name(sig->args[i])), -1;
    sig->form = AD_FFI_SCALAR;
    return 0;
}
