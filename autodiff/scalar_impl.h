/* autodiff/scalar_impl.h - what scalar.c (recording, the sweep) and
 * scalar_replay.c (the replay) share: the op codes, the tape's arrays, the
 * one definition of every op (sop_eval) and the handle checks.  Private;
 * scalar.c's opening comment describes the layout. */
#ifndef AUTODIFF_SCALAR_IMPL_H
#define AUTODIFF_SCALAR_IMPL_H

#include <stdint.h>

#include "formulas.h"
#include "internal.h"

#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define HOT static inline __attribute__((always_inline))
#define COLD __attribute__((noinline, cold))

/* ---- op codes ------------------------------------------------------------------
 * What node i computes from x = value[a[i]], y = value[b[i]] and its
 * constant c (sop_eval below is the one definition of each). */
enum {
    SOP_VAR,     /* independent variable: c (the replay supplies new ones) */
    SOP_CONST,   /* constant: c */
    SOP_ADD,     /* x + y */
    SOP_SUB,     /* x - y */
    SOP_MUL,     /* x y */
    SOP_DIV,     /* x / y */
    SOP_POW,     /* x^y */
    SOP_MAX,     /* max(x, y) */
    SOP_MIN,     /* min(x, y) */
    SOP_ADD_C,   /* x + c (also x - c, recorded as x + (-c), which is exact) */
    SOP_MUL_C,   /* x c */
    SOP_CSUB,    /* c - x */
    SOP_DIV_C,   /* x / c (not x (1/c), which rounds differently) */
    SOP_CDIV,    /* c / x */
    SOP_POW_C,   /* x^c */
    SOP_NEG,     /* -x */
    SOP_EXP,     /* e^x */
    SOP_LOG,     /* ln x */
    SOP_SQRT,    /* sqrt x */
    SOP_SIN,     /* sin x */
    SOP_COS,     /* cos x */
    SOP_TAN,     /* tan x */
    SOP_TANH,    /* tanh x */
    SOP_SIGMOID, /* 1 / (1 + e^-x) */
    SOP_RELU,    /* max(x, 0) */
    SOP_ABS,     /* |x| */
    SOP_SQUARE,  /* x^2 */
    SOP_COUNT
};

/* Ops with a constant operand, which keep it in c[]. */
static inline bool sop_has_c(int op) { return op >= SOP_ADD_C && op <= SOP_POW_C; }

/* Operands of an op: its edges.  A constant after inlining wherever the op
 * is, so recording and each case of the replay step by a known amount. */
static inline int sop_nargs(int op)
{
    return op <= SOP_CONST ? 0 : op <= SOP_MIN ? 2 : 1;
}
_Static_assert(SOP_VAR == 0 && SOP_CONST == 1 && SOP_ADD == 2 && SOP_MIN == 8 &&
                   SOP_ADD_C == 9 && SOP_SQUARE == SOP_COUNT - 1,
               "sop_nargs and sop_has_c read the arity from the order of the op codes");

/* Ids are 32 bits and below this, so a tape holds at most this many
 * nodes. */
#define SOP_MAX_NODES UINT32_MAX

/* One operand of a node: node `node` reads node `arg` (the partial is
 * d[k] beside it).  8 bytes, one store when recorded. */
typedef struct sop_link {
    uint32_t arg;
    uint32_t node;
} sop_link;

struct ad_scalar_tape {
    double *value;
    double *adj;   /* adj[0..cap) */
    double *c;     /* the constants of the ops that have one, in recording order */
    sop_link *link; /* the edges, in recording order: link[0..ne) */
    double *d;      /* and their partials */
    uint8_t *op;
    size_t n;      /* nodes recorded since the last reset */
    size_t ne, nc; /* edges and constants recorded since the last reset */
    size_t cap;    /* nodes the arrays hold (edges: 2 cap, constants: cap) */
    size_t nadj;   /* adjoints of ids < nadj are from the last backward */
    size_t allocs; /* system allocations made so far (for tests) */
    uint32_t gen;  /* handles made since the last reset carry it */
};

/* ---- evaluation: one definition of every op ------------------------------------------
 * Value and local partials of an op at x, y (operand values) and c.  Every
 * recording function calls it with a constant op, so after inlining the
 * switch folds away; so does each case of the replay, which calls it with
 * the new operand values and the node's constant.  Kinks follow the tensor
 * API (ops_pointwise.h). */
HOT void sop_eval(int op, double x, double y, double c, double *v, double *da, double *db)
{
    double r;
    *da = 0.0;
    *db = 0.0;
    switch (op) {
    case SOP_VAR:
    case SOP_CONST: *v = c; return;
    case SOP_ADD: *v = x + y; *da = 1.0; *db = 1.0; return;
    case SOP_SUB: *v = x - y; *da = 1.0; *db = -1.0; return;
    case SOP_MUL: *v = x * y; *da = y; *db = x; return;
    case SOP_DIV:
        /* d(x/y)/dy = -x/y^2 = -(x/y)/y, which does not overflow y^2. */
        r = x / y;
        *v = r; *da = 1.0 / y; *db = -r / y;
        return;
    case SOP_POW: /* the conventions at x = 0 and y = 0: formulas.h */
        r = pow(x, y);
        *v = r;
        *da = ad__pow_dx(x, y);
        *db = ad__pow_dy(x, r);
        return;
    case SOP_MAX:
    case SOP_MIN:
        /* The larger (smaller) operand gets the whole gradient; on a tie
         * each gets half, the average of the one-sided choices, as the
         * tensor API's maximum/minimum.  NaN propagates. */
        if (op == SOP_MAX ? x > y : x < y) { *v = x; *da = 1.0; return; }
        if (op == SOP_MAX ? y > x : y < x) { *v = y; *db = 1.0; return; }
        *v = x == y ? x : x + y; /* a tie, or a NaN (x + y is then NaN) */
        *da = 0.5; *db = 0.5;
        return;
    case SOP_ADD_C: *v = x + c; *da = 1.0; return;
    case SOP_MUL_C: *v = x * c; *da = c; return;
    case SOP_CSUB: *v = c - x; *da = -1.0; return;
    case SOP_DIV_C: *v = x / c; *da = 1.0 / c; return;
    case SOP_CDIV: r = c / x; *v = r; *da = -r / x; return; /* -c/x^2 */
    case SOP_POW_C:
        /* As SOP_POW with y = c. */
        *v = pow(x, c);
        *da = ad__pow_dx(x, c);
        return;
    case SOP_NEG: *v = -x; *da = -1.0; return;
    case SOP_EXP: r = exp(x); *v = r; *da = r; return;
    case SOP_LOG: *v = log(x); *da = 1.0 / x; return;
    case SOP_SQRT: r = sqrt(x); *v = r; *da = 0.5 / r; return; /* inf at 0 */
    case SOP_SIN: *v = sin(x); *da = cos(x); return;
    case SOP_COS: *v = cos(x); *da = -sin(x); return;
    case SOP_TAN: r = tan(x); *v = r; *da = 1.0 + r * r; return; /* sec^2 */
    case SOP_TANH: r = tanh(x); *v = r; *da = 1.0 - r * r; return;
    case SOP_SIGMOID: *v = ad__sigmoid_d(x, da); return; /* overflow-free: formulas.h */
    case SOP_RELU:
        /* relu'(0) = 0: the subgradient PyTorch picks.  NaN propagates. */
        *v = x > 0.0 ? x : (isnan(x) ? x : 0.0);
        *da = x > 0.0 ? 1.0 : 0.0;
        return;
    case SOP_ABS:
        /* sign(x), with abs'(0) = 0. */
        *v = fabs(x);
        *da = x > 0.0 ? 1.0 : (x < 0.0 ? -1.0 : 0.0);
        return;
    case SOP_SQUARE: *v = x * x; *da = 2.0 * x; return;
    default: *v = NAN; return;
    }
}

/* The constant of node i, what sop_eval needs besides the operand values,
 * is a variable's or constant's value[i] itself, and for the SOP_*_C ops
 * the next entry of c[]: the replay, walking the nodes in order, reads them
 * in order. */

/* ---- the tape and handles -------------------------------------------------------- */

static inline struct ad_scalar_tape *get(const ad_tape *tape)
{
    return *ad__scalar_slot((ad_tape *)tape);
}

/* A handle is live when its tape's scalar state is of the same generation
 * (a fresh stamp at every reset, from the process-wide counter, so a handle
 * kept across a reset never passes for the node recorded at its id since)
 * and its id was recorded. */
static inline bool live(const struct ad_scalar_tape *st, ad_scalar s)
{
    return st && s.gen == st->gen && s.id < st->n;
}

/* Whether hs[0..n) (n > 0) are the handles of n live nodes of tape with
 * consecutive ids from hs[0]'s: the usual array (the variables as
 * recorded), checked in one pass without a branch per handle.  Every
 * handle must equal {tape, id0 + k, gen}; the differences are or-ed
 * together as 64-bit words (the pointer, and id + 2^32 gen), which the
 * compiler vectorises even with SSE2 alone.  The element-by-element check
 * that names a bad handle runs only when this fails. */
static inline bool handles_consecutive(const struct ad_scalar_tape *st, const ad_tape *tape,
                                       const ad_scalar *hs, int n)
{
    if (!st || n <= 0) return false;
    uint32_t id0 = hs[0].id;
    if (id0 >= st->n || (size_t)n > st->n - id0) return false;
    uint64_t t = (uint64_t)(uintptr_t)tape, w0 = (uint64_t)st->gen << 32 | id0, bad = 0;
    for (int k = 0; k < n; k++)
        bad |= ((uint64_t)(uintptr_t)hs[k].tape ^ t) |
               (((uint64_t)hs[k].gen << 32 | hs[k].id) ^ (w0 + (uint64_t)k));
    return bad == 0;
}

/* The replay's two halves (scalar_replay.c), shared by ad_scalar_replay
 * and ad_scalar_replay_gradient.  check_vars: whether vars[0..n) are
 * live variables of tape (st its scalar state, NULL when it recorded
 * none), -1 with fn's error naming the first that is not; sets
 * *consecutive when their ids follow one another.  replay_run (st not
 * NULL, vars checked): sets their values and re-evaluates the tape;
 * returns the kinks whose branch changed. */
int ad__scalar_check_vars(const char *fn, const struct ad_scalar_tape *st, const ad_tape *tape,
                          int n, const ad_scalar *vars, bool *consecutive);
int ad__scalar_replay_run(struct ad_scalar_tape *st, int n, const ad_scalar *vars, bool consecutive,
                          const double *values);

#endif
