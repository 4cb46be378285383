/* tools/expr.c - recursive-descent parser for adcalc's expressions.
 *
 * Each grammar rule of expr.h is one function that consumes the input
 * from p->pos and returns the tree of what it read.  Precedence comes from
 * the nesting of the rules: sum calls product, product calls unary, unary
 * calls power, power calls primary.  An operator that binds tighter is
 * parsed deeper, so it ends up lower in the tree and is evaluated first.
 *
 * Errors: the first failure records its column and message in the parser
 * and every rule returns NULL from then on; the caller gets one message
 * about the first thing that went wrong.
 */
#include "expr.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    int arity;
} FUNCTIONS[] = {
    {"sin", 1},  {"cos", 1},     {"tan", 1},  {"exp", 1}, {"log", 1},
    {"sqrt", 1}, {"tanh", 1},    {"sigmoid", 1}, {"relu", 1}, {"abs", 1},
    {"pow", 2},  {"max", 2},     {"min", 2},
};
#define NFUNCTIONS (sizeof FUNCTIONS / sizeof FUNCTIONS[0])

int expr_function_arity(const char *name)
{
    if (!name) return -1;
    for (size_t i = 0; i < NFUNCTIONS; i++)
        if (strcmp(FUNCTIONS[i].name, name) == 0) return FUNCTIONS[i].arity;
    return -1;
}

typedef struct parser {
    const char *src;   /* the ASCII form of the input (see normalise) */
    size_t len;
    size_t pos;        /* next unread byte */
    const int *col;    /* col[i]: 1-based column, in characters of the input as
                          given, of the character that produced src[i]; col[len]
                          is the column just past the end */
    int depth;         /* current nesting, bounded by EXPR_MAX_DEPTH */
    expr_error *err;
    int failed;
} parser;

static expr *fail(parser *p, size_t at, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static expr *fail(parser *p, size_t at, const char *fmt, ...)
{
    if (p->failed) return NULL; /* keep the first error */
    p->failed = 1;
    if (p->err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err->message, sizeof p->err->message, fmt, ap);
        va_end(ap);
        p->err->column = p->col ? p->col[at < p->len ? at : p->len] : (int)at + 1;
    }
    return NULL;
}

/* Iterative along the left operands of binary nodes, so a flat sum of
 * thousands of terms (a left-leaning chain) is freed without recursing
 * once per term; recursion is bounded by the height (see grown). */
void expr_free(expr *e)
{
    while (e) {
        expr *next = NULL;
        for (int i = 0; i < e->nargs; i++) {
            if (e->kind == EXPR_BINARY && i == 0) next = e->args[0];
            else expr_free(e->args[i]);
        }
        free(e->text);
        free(e);
        e = next;
    }
}

static expr *node(parser *p, expr_kind kind, size_t at)
{
    expr *e = calloc(1, sizeof *e);
    if (!e) return fail(p, at, "out of memory");
    e->kind = kind;
    e->column = p->col[at];
    e->height = 1;
    return e;
}

/* Sets e's height from its arguments; fails (freeing e) past the limit.
 * The height is the recursion depth of a walk that loops along the left
 * operand of binary nodes (as expr_free and adcalc do) and recurses into
 * everything else: a chain a+b+c+... of any length has height 2. */
static expr *grown(parser *p, expr *e)
{
    for (int i = 0; i < e->nargs; i++) {
        int h = e->args[i]->height + (e->kind == EXPR_BINARY && i == 0 ? 0 : 1);
        if (h > e->height) e->height = h;
    }
    if (e->height <= EXPR_MAX_HEIGHT) return e;
    size_t at = 0; /* the position of e's token, for the message's column */
    while (at < p->len && p->col[at] < e->column) at++;
    fail(p, at, "expression too deep (more than %d nested operations)", EXPR_MAX_HEIGHT);
    expr_free(e);
    return NULL;
}

static char *copy_span(parser *p, size_t start, size_t end)
{
    char *s = malloc(end - start + 1);
    if (!s) {
        fail(p, start, "out of memory");
        return NULL;
    }
    memcpy(s, p->src + start, end - start);
    s[end - start] = '\0';
    return s;
}

static void skip_space(parser *p)
{
    while (p->pos < p->len && (p->src[p->pos] == ' ' || p->src[p->pos] == '\t')) p->pos++;
}

static int peek(parser *p)
{
    skip_space(p);
    return p->pos < p->len ? (unsigned char)p->src[p->pos] : -1;
}

static int is_name_start(int c) { return c == '_' || (c >= 0 && c < 128 && isalpha(c)); }
static int is_name_char(int c) { return c == '_' || (c >= 0 && c < 128 && isalnum(c)); }

/* Names the token at p->pos for an error message: "')'", "end of
 * expression", "byte 0xc3" for what cannot be shown as a character. */
static expr *unexpected(parser *p)
{
    int c = peek(p);
    if (c < 0) return fail(p, p->pos, "unexpected end of expression");
    if (c >= 0x20 && c < 0x7f) {
        if (is_name_start(c)) {
            size_t end = p->pos;
            while (end < p->len && is_name_char((unsigned char)p->src[end])) end++;
            return fail(p, p->pos, "unexpected '%.*s'", (int)(end - p->pos > 40 ? 40 : end - p->pos),
                        p->src + p->pos);
        }
        if (c == '*' && p->pos + 1 < p->len && p->src[p->pos + 1] == '*')
            return fail(p, p->pos, "unexpected '**' (write ^ for a power: x^2)");
        return fail(p, p->pos, "unexpected '%c'", c);
    }
    /* A UTF-8 character that normalise() does not know: show it whole. */
    size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    unsigned cp = n == 4 ? c & 0x07u : n == 3 ? c & 0x0fu : c & 0x1fu;
    bool valid = n > 1 && p->pos + n <= p->len;
    for (size_t k = 1; valid && k < n; k++) {
        unsigned char b = (unsigned char)p->src[p->pos + k];
        valid = (b & 0xc0) == 0x80;
        cp = cp << 6 | (b & 0x3fu);
    }
    if (valid)
        return fail(p, p->pos, "unexpected character '%.*s' (U+%04X)", (int)n, p->src + p->pos,
                    cp);
    return fail(p, p->pos, "unexpected byte 0x%02x", (unsigned)c);
}

static expr *parse_sum(parser *p);
static expr *parse_unary(parser *p);

/* Enter/leave one level of nesting; deep recursion on hostile input such
 * as "((((...": fail instead of overflowing the stack. */
static int enter(parser *p)
{
    if (++p->depth > EXPR_MAX_DEPTH) {
        fail(p, p->pos, "expression nested too deeply (more than %d levels)", EXPR_MAX_DEPTH);
        return -1;
    }
    return 0;
}

static expr *binary(parser *p, char op, size_t at, expr *lhs, expr *rhs)
{
    if (!lhs || !rhs) {
        expr_free(lhs);
        expr_free(rhs);
        return NULL;
    }
    expr *e = node(p, EXPR_BINARY, at);
    if (!e) {
        expr_free(lhs);
        expr_free(rhs);
        return NULL;
    }
    e->op = op;
    e->nargs = 2;
    e->args[0] = lhs;
    e->args[1] = rhs;
    return grown(p, e);
}

/* NUMBER: digits [. digits] | . digits, then [eE][+-]digits.  Scanned by
 * hand so that "1e" or "1e+" are reported as malformed rather than read
 * as 1 followed by a stray name, then converted with strtod. */
static expr *parse_number(parser *p)
{
    size_t start = p->pos, i = p->pos;
    size_t digits = 0;
    if (p->src[i] == '0' && i + 1 < p->len && (p->src[i + 1] == 'x' || p->src[i + 1] == 'X') &&
        i + 2 < p->len && isxdigit((unsigned char)p->src[i + 2])) {
        size_t end = i + 2;
        while (end < p->len && isalnum((unsigned char)p->src[end])) end++;
        return fail(p, start, "hexadecimal numbers such as '%.*s' are not supported; write "
                    "numbers in decimal", (int)(end - start > 40 ? 40 : end - start),
                    p->src + start);
    }
    while (i < p->len && isdigit((unsigned char)p->src[i])) i++, digits++;
    if (i < p->len && p->src[i] == '.') {
        i++;
        while (i < p->len && isdigit((unsigned char)p->src[i])) i++, digits++;
    }
    if (digits == 0) return fail(p, start, "malformed number '.'");
    if (i < p->len && (p->src[i] == 'e' || p->src[i] == 'E')) {
        size_t j = i + 1;
        if (j < p->len && (p->src[j] == '+' || p->src[j] == '-')) j++;
        if (j >= p->len || !isdigit((unsigned char)p->src[j])) {
            size_t end = j < p->len ? j + 1 : j;
            return fail(p, start, "malformed number '%.*s' (exponent without digits)",
                        (int)(end - start > 40 ? 40 : end - start), p->src + start);
        }
        while (j < p->len && isdigit((unsigned char)p->src[j])) j++;
        i = j;
    }
    expr *e = node(p, EXPR_NUM, start);
    if (!e) return NULL;
    e->text = copy_span(p, start, i);
    if (!e->text) {
        expr_free(e);
        return NULL;
    }
    e->value = strtod(e->text, NULL);
    if (isinf(e->value)) {
        expr_free(e);
        return fail(p, start, "number '%.40s' is too large for a double", p->src + start);
    }
    p->pos = i;
    /* "2x", "2pi" and "2(x+1)" are common slips for a product; say so. */
    if (i < p->len && (is_name_start((unsigned char)p->src[i]) || p->src[i] == '(')) {
        size_t end = i + 1;
        while (p->src[i] != '(' && end < p->len && is_name_char((unsigned char)p->src[end])) end++;
        int nl = (int)(i - start > 40 ? 40 : i - start), ml = (int)(end - i > 40 ? 40 : end - i);
        expr_free(e);
        return fail(p, i, "unexpected '%.*s' after the number '%.*s' (write %.*s*%.*s for a "
                    "product)", ml, p->src + i, nl, p->src + start, nl, p->src + start, ml,
                    p->src + i);
    }
    return e;
}

/* NAME '(' args ')': a call of a known function with its exact arity.
 * Surplus arguments are parsed (so their syntax errors are reported first)
 * and counted for the message, then dropped. */
static expr *parse_call(parser *p, char *name, size_t at)
{
    int arity = expr_function_arity(name);
    if (arity < 0) {
        /* Names from other notations, and what to write instead. */
        static const char *const HINTS[][2] = {
            {"ln", "log is the natural logarithm: write log(x)"},
            {"log10", "write log(x)/log(10)"},
            {"log2", "write log(x)/log(2)"},
            {"power", "write x^y or pow(x, y)"},
            {"sqr", "write x^2"},
            {"logistic", "write sigmoid(x)"},
            {"expit", "write sigmoid(x)"},
            {"fabs", "write abs(x)"},
        };
        const char *hint = NULL;
        for (size_t k = 0; k < sizeof HINTS / sizeof HINTS[0]; k++)
            if (strcmp(HINTS[k][0], name) == 0) hint = HINTS[k][1];
        if (hint) fail(p, at, "unknown function '%s' (%s)", name, hint);
        else fail(p, at, "unknown function '%.40s'", name);
        free(name);
        return NULL;
    }
    expr *e = node(p, EXPR_CALL, at);
    if (!e) {
        free(name);
        return NULL;
    }
    e->text = name;
    p->pos++; /* '(' */
    int n = 0;
    if (peek(p) != ')') {
        for (;;) {
            expr *a = parse_sum(p);
            if (!a) {
                expr_free(e);
                return NULL;
            }
            if (n < arity) {
                e->args[n] = a;
                e->nargs = n + 1;
            } else {
                expr_free(a);
            }
            n++;
            if (peek(p) != ',') break;
            p->pos++;
        }
    }
    if (peek(p) != ')') {
        if (peek(p) < 0)
            fail(p, p->pos, "unexpected end of expression (expected ')' to close '%s(')",
                 e->text);
        else
            unexpected(p);
        expr_free(e);
        return NULL;
    }
    if (n != arity) {
        fail(p, at, "%s takes %d argument%s, got %d", e->text, arity, arity == 1 ? "" : "s", n);
        expr_free(e);
        return NULL;
    }
    p->pos++; /* ')' */
    return grown(p, e);
}

/* primary := NUMBER | NAME | NAME '(' args ')' | '(' sum ')' */
static expr *parse_primary(parser *p)
{
    int c = peek(p);
    size_t at = p->pos;
    if (c == '.' || (c >= '0' && c <= '9')) return parse_number(p);
    if (is_name_start(c)) {
        size_t end = at;
        while (end < p->len && is_name_char((unsigned char)p->src[end])) end++;
        char *name = copy_span(p, at, end);
        if (!name) return NULL;
        p->pos = end;
        if (peek(p) == '(') return parse_call(p, name, at);
        if (expr_function_arity(name) >= 0) {
            fail(p, p->pos, "expected '(' after the function name '%s'", name);
            free(name);
            return NULL;
        }
        expr *e = node(p, EXPR_VAR, at);
        if (!e) {
            free(name);
            return NULL;
        }
        e->text = name;
        return e;
    }
    if (c == '(') {
        p->pos++;
        if (enter(p)) return NULL;
        expr *e = parse_sum(p);
        p->depth--;
        if (!e) return NULL;
        if (peek(p) != ')') {
            expr_free(e);
            if (peek(p) < 0)
                return fail(p, p->pos,
                            "unexpected end of expression (expected ')' to close the '(' at "
                            "column %d)",
                            p->col[at]);
            return unexpected(p);
        }
        p->pos++;
        return e;
    }
    return unexpected(p);
}

/* power := primary ('^' unary)?  The right operand is parsed by unary,
 * which comes back here, so a^b^c nests to the right: a^(b^c). */
static expr *parse_power(parser *p)
{
    expr *base = parse_primary(p);
    if (!base || peek(p) != '^') return base;
    size_t at = p->pos++;
    if (enter(p)) {
        expr_free(base);
        return NULL;
    }
    expr *exponent = parse_unary(p);
    p->depth--;
    return binary(p, '^', at, base, exponent);
}

/* unary := ('-' | '+') unary | power.  Unary plus changes nothing and
 * leaves no node; unary minus becomes EXPR_NEG over a whole power, which
 * is why -x^2 means -(x^2). */
static expr *parse_unary(parser *p)
{
    int c = peek(p);
    if (c != '-' && c != '+') return parse_power(p);
    size_t at = p->pos++;
    if (enter(p)) return NULL;
    expr *operand = parse_unary(p);
    p->depth--;
    if (!operand || c == '+') return operand;
    expr *e = node(p, EXPR_NEG, at);
    if (!e) {
        expr_free(operand);
        return NULL;
    }
    e->nargs = 1;
    e->args[0] = operand;
    return grown(p, e);
}

/* product := unary (('*' | '/') unary)*, folded to the left: a/b/c is
 * (a/b)/c. */
static expr *parse_product(parser *p)
{
    expr *lhs = parse_unary(p);
    while (lhs && (peek(p) == '*' || peek(p) == '/')) {
        char op = p->src[p->pos];
        size_t at = p->pos++;
        if (op == '*' && peek(p) == '*') { /* x**2, the power of Python and Fortran */
            expr_free(lhs);
            return fail(p, at, "unexpected '**' (write ^ for a power: x^2)");
        }
        lhs = binary(p, op, at, lhs, parse_unary(p));
    }
    return lhs;
}

/* sum := product (('+' | '-') product)*, folded to the left: a-b-c is
 * (a-b)-c. */
static expr *parse_sum(parser *p)
{
    expr *lhs = parse_product(p);
    while (lhs && (peek(p) == '+' || peek(p) == '-')) {
        char op = p->src[p->pos];
        size_t at = p->pos++;
        lhs = binary(p, op, at, lhs, parse_product(p));
    }
    return lhs;
}

/* The mathematical characters that the guide and textbooks print, and the
 * ASCII that stands for them.  π becomes " pi " so that it cannot merge with
 * a neighbouring name ("xπ" is a product written without '*', an error,
 * not a variable "xpi"). */
static const struct {
    const char *utf8, *ascii;
} UNICODE[] = {
    {"\xc2\xb7", "*"},     /* · U+00B7 middle dot */
    {"\xe2\x8b\x85", "*"}, /* ⋅ U+22C5 dot operator */
    {"\xc3\x97", "*"},     /* × U+00D7 */
    {"\xc3\xb7", "/"},     /* ÷ U+00F7 */
    {"\xe2\x88\x92", "-"}, /* − U+2212 minus sign */
    {"\xc2\xb2", "^2"},    /* ² U+00B2 */
    {"\xc2\xb3", "^3"},    /* ³ U+00B3 */
    {"\xcf\x80", " pi "},  /* π U+03C0 */
};

/* Rewrites src[0..len) into ASCII for the parser: the characters above
 * become their ASCII forms, everything else is copied.  col[i] receives
 * the 1-based character column (UTF-8 continuation bytes do not count) of
 * the input character that produced out[i].  out needs room for 4 * len + 1
 * bytes (" pi " from two), col for as many ints.  Returns the length. */
static size_t normalise(const char *src, size_t len, char *out, int *col)
{
    size_t n = 0;
    int column = 0;
    bool sup = false; /* the character before was a superscript */
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)src[i];
        /* a character starts here, unless this is a continuation byte of
         * a UTF-8 sequence (a stray one counts as a character of its own) */
        if ((c & 0xc0) != 0x80 || i == 0 || (unsigned char)src[i - 1] < 0x80) column++;
        size_t k = 0;
        while (k < sizeof UNICODE / sizeof UNICODE[0] &&
               strncmp(src + i, UNICODE[k].utf8, strlen(UNICODE[k].utf8)) != 0)
            k++;
        if (k < sizeof UNICODE / sizeof UNICODE[0]) {
            /* superscripts in a row are one exponent, x²³ = x^23 (not
             * x^2^3); a digit or point right after one starts a number
             * of its own, which the parser then refuses (x²3 is not
             * x^23) */
            bool is_sup = UNICODE[k].ascii[0] == '^';
            for (const char *a = UNICODE[k].ascii + (is_sup && sup); *a; a++) {
                col[n] = column;
                out[n++] = *a;
            }
            i += strlen(UNICODE[k].utf8);
            sup = is_sup;
        } else {
            if (sup && (isdigit(c) || c == '.')) {
                col[n] = column;
                out[n++] = ' ';
            }
            col[n] = column;
            out[n++] = src[i++];
            sup = false;
        }
    }
    col[n] = column + 1;
    out[n] = '\0';
    return n;
}

expr *expr_parse(const char *src, expr_error *err)
{
    parser p = {src, 0, 0, NULL, 0, err, 0};
    if (err) {
        err->column = 0;
        err->message[0] = '\0';
    }
    if (!src) return fail(&p, 0, "no expression (NULL)");
    size_t len = 0;
    while (len <= EXPR_MAX_LENGTH && src[len]) len++; /* strlen, bounded */
    if (len > EXPR_MAX_LENGTH)
        return fail(&p, 0, "expression longer than %d characters", EXPR_MAX_LENGTH);
    char *ascii = malloc(4 * len + 1);
    int *col = malloc((4 * len + 1) * sizeof *col);
    if (!ascii || !col) {
        free(ascii);
        free(col);
        return fail(&p, 0, "out of memory");
    }
    p.len = normalise(src, len, ascii, col);
    p.src = ascii;
    p.col = col;
    expr *e;
    if (peek(&p) < 0) {
        e = fail(&p, p.pos, "empty expression");
    } else {
        e = parse_sum(&p);
        if (e && peek(&p) >= 0) {
            expr_free(e);
            e = unexpected(&p);
        }
    }
    free(ascii);
    free(col);
    return e;
}
