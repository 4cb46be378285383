/* tools/expr.h - the arithmetic-expression parser of adcalc.
 *
 * expr_parse() turns a string such as "x*sin(x) + 2^-y" into a tree of
 * expr nodes, or reports the first syntax error with its 1-based column.
 * It is a pure function: no global state, no output, no exit; every node
 * and string of the tree is heap memory released by expr_free().  That
 * makes it safe to call on arbitrary bytes (it is meant to be fuzzed): the
 * input length and the nesting depth are bounded, so hostile input fails
 * with an error instead of exhausting the stack.
 *
 * Grammar (recursive descent; one function per line, lowest precedence
 * first):
 *
 *   sum     := product (('+' | '-') product)*          left-associative
 *   product := unary (('*' | '/') unary)*              left-associative
 *   unary   := ('-' | '+') unary | power
 *   power   := primary ('^' unary)?                    right-associative
 *   primary := NUMBER | NAME | NAME '(' args ')' | '(' sum ')'
 *   args    := sum (',' sum)*
 *
 * Because `power` sits below `unary`, '^' binds tighter than unary minus,
 * as in mathematics: -x^2 is -(x^2).  Its right operand is a `unary`, so
 * 2^-1 is allowed, and chains associate to the right: 2^3^2 = 2^(3^2).
 *
 * NUMBER is decimal with an optional fraction and exponent: 2, 2.5, .5,
 * 2., 1e-3, 2.5E+10.  NAME is [A-Za-z_][A-Za-z0-9_]*.  A NAME directly
 * followed by '(' is a call and must be one of the functions below; a
 * function name without '(' is an error.  Any other NAME is a variable
 * (the caller decides what pi or e mean).  Spaces and tabs are ignored.
 * Hexadecimal literals (0x10) are rejected with a message saying so.
 *
 * The characters that mathematics is printed with are read as their ASCII
 * forms: · ⋅ × as '*', ÷ as '/', − (U+2212) as '-', ² and ³ as ^2 and ^3,
 * π as pi.  So "x·y − x²" is "x*y - x^2".  Other non-ASCII characters are
 * errors that show the character and its code point.
 *
 * Columns count characters (UTF-8 code points) of src from 1.
 */
#ifndef ADCALC_EXPR_H
#define ADCALC_EXPR_H

#include <stddef.h>

typedef enum expr_kind {
    EXPR_NUM,    /* a literal: value, text */
    EXPR_VAR,    /* a variable: text is its name */
    EXPR_NEG,    /* -args[0] */
    EXPR_BINARY, /* args[0] op args[1], op one of + - * / ^ */
    EXPR_CALL    /* text(args[0], ...), nargs = the function's arity */
} expr_kind;

#define EXPR_MAX_ARGS 2
/* Longest accepted input (in bytes), deepest nesting of parentheses, unary
 * signs and powers (which the parser recurses on), and greatest height of
 * the tree; beyond them expr_parse fails cleanly.  The height counts the
 * recursion of a walk that loops along the left operand (args[0]) of
 * EXPR_BINARY nodes and recurses into every other argument, as expr_free
 * and adcalc do: a chain a+b+c+... nests to the left and has height 2
 * whatever its length, so flat sums and products of thousands of terms are
 * fine, while a nesting such as sin(sin(...)) counts one per level. */
#define EXPR_MAX_LENGTH 65536
#define EXPR_MAX_DEPTH 200
#define EXPR_MAX_HEIGHT 5000

typedef struct expr expr;
struct expr {
    expr_kind kind;
    int column;  /* 1-based column (in characters) of the token that made
                    the node: the literal, the name, the operator or the
                    function name */
    char op;     /* EXPR_BINARY: '+', '-', '*', '/' or '^' */
    int height;  /* 1 for a leaf; else the largest of args[i]->height + 1,
                    except args[0] of EXPR_BINARY, which counts without the
                    + 1 (see EXPR_MAX_HEIGHT) */
    double value;      /* EXPR_NUM */
    char *text;        /* EXPR_NUM: the literal as written; EXPR_VAR: the
                          name; EXPR_CALL: the function name */
    int nargs;
    expr *args[EXPR_MAX_ARGS];
};

typedef struct expr_error {
    int column;        /* 1-based, in characters; length + 1 for "at the end" */
    char message[160]; /* "unexpected ')'", "unknown function 'sine'" */
} expr_error;

/* Parses src.  Returns the tree, or NULL with *err filled in (err may be
 * NULL if the caller does not care why).  src == NULL is an error. */
expr *expr_parse(const char *src, expr_error *err);
/* Frees a tree from expr_parse; NULL is ignored. */
void expr_free(expr *e);

/* The functions the grammar knows: sin cos tan exp log sqrt tanh sigmoid
 * relu abs (one argument), pow max min (two).  The arity of the named
 * function, or -1 when there is no such function. */
int expr_function_arity(const char *name);

#endif
