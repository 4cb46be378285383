/* tests/fuzz/fuzz_expr.c - adcalc's expression parser (tools/expr.h) on
 * arbitrary bytes.  Besides not crashing, leaking or overflowing the stack
 * (the depth limit), the parser must keep its promises: either a tree or
 * an error with a column in 1..length+1 and a terminated message, and
 * every node of a tree well formed. */
#include "../../tools/expr.h"
#include "fuzz_common.h"

static size_t len;

/* Walks the tree as expr_free and adcalc do: a loop along the left operand
 * of binary nodes (a chain a+b+c+... of any length), recursion into the
 * rest, whose depth the height bounds. */
static int check(const expr *e, int depth)
{
    int n = 0;
    for (;;) {
        FUZZ_ASSERT(e != NULL);
        FUZZ_ASSERT(depth <= EXPR_MAX_HEIGHT);
        FUZZ_ASSERT(e->height >= 1 && e->height <= EXPR_MAX_HEIGHT);
        FUZZ_ASSERT(e->column >= 1 && (size_t)e->column <= len);
        FUZZ_ASSERT(e->nargs >= 0 && e->nargs <= EXPR_MAX_ARGS);
        switch (e->kind) {
        case EXPR_NUM: FUZZ_ASSERT(e->text && e->nargs == 0); break;
        case EXPR_VAR: FUZZ_ASSERT(e->text && e->nargs == 0 && expr_function_arity(e->text) < 0); break;
        case EXPR_NEG: FUZZ_ASSERT(e->nargs == 1); break;
        case EXPR_BINARY:
            FUZZ_ASSERT(e->nargs == 2 && e->op && strchr("+-*/^", e->op));
            FUZZ_ASSERT(e->args[0]->height <= e->height && e->args[1]->height < e->height);
            break;
        case EXPR_CALL: FUZZ_ASSERT(e->text && expr_function_arity(e->text) == e->nargs); break;
        default: FUZZ_ASSERT(!"unknown kind");
        }
        n++;
        for (int i = e->kind == EXPR_BINARY ? 1 : 0; i < e->nargs; i++)
            n += check(e->args[i], depth + 1);
        if (e->kind != EXPR_BINARY) return n;
        e = e->args[0];
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *src = fuzz_string(data, size);
    len = strlen(src);
    expr_error err;
    memset(&err, 0x55, sizeof err);
    expr *e = expr_parse(src, &err);
    if (e) {
        check(e, 0);
        expr_free(e);
    } else {
        FUZZ_ASSERT(memchr(err.message, '\0', sizeof err.message) != NULL);
        FUZZ_ASSERT(err.message[0] != '\0');
        FUZZ_ASSERT(err.column >= 1 && (size_t)err.column <= len + 1);
    }
    /* err may be NULL */
    expr_free(expr_parse(src, NULL));
    free(src);
    return 0;
}
