/* autodiff/scalar_replay.c - ad_scalar_replay (scalar.h): the recorded
 * scalar tape evaluated again at new values of its variables.  The tape's
 * layout: scalar.c and scalar_impl.h. */
#include "scalar_impl.h"

/* ---- replay ---------------------------------------------------------------------- */

/* The replay re-evaluates node after node in tape order, with a cursor
 * into the edges (l into their ids: b at l[0], a at l[1] for a binary op,
 * a at l[0] for a unary one; d into their partials, in step) and one c
 * into the constants.  Each op has its own handler, which calls sop_eval
 * with a constant op (so it folds to that op's formula, still defined
 * once, above), loads only the operands the op has and stores only what
 * can change:
 *
 *   REPLAY_V    ops whose partials are constants (x + y, c - x, x c ...):
 *               the partials recorded are still right; only the value
 *   REPLAY_VA   one operand: the value and its partial
 *   REPLAY_VAB  two operands: the value and both partials
 *   REPLAY_KINK_* the same for ops whose partials jump (max, min, relu,
 *               abs): a changed partial of the first operand means the
 *               other branch was taken, which is counted for the caller
 *
 * The walk is two functions.  walk_fast runs the ops that are a few
 * instructions (arithmetic, kinks, square) and returns at any other op or
 * at the end mark after the last op (op[n] = SOP_COUNT; the arrays have
 * room for it); walk_slow evaluates one op that calls the C library (exp,
 * sin, pow ...).  walk_fast makes no call, so the compiler keeps all its
 * cursors in registers, where with the calls in the same function it kept
 * one on the stack (the registers a call preserves are too few for them),
 * and the slow ops, tens of cycles each in the library, pay a call more.
 *
 * With GCC and clang walk_fast's handlers are threaded: each ends by
 * jumping straight to the next node's handler through a table of label
 * addresses (the labels-as-values extension), so a node costs one
 * indirect jump and no loop test; this predicts better too, as each
 * handler's jump learns what follows its own op.  Other compilers (and
 * -DAD_SCALAR_REPLAY_SWITCH, which tests this path) get the same handlers
 * as the cases of a switch in a loop.  A generic loop (test whether a and
 * b exist, fetch the constant, dispatch inside sop_eval, store all three)
 * ran at about half the switch's speed on the extended Rosenbrock
 * function. */
#if (defined(__GNUC__) || defined(__clang__)) && !defined(AD_SCALAR_REPLAY_SWITCH)
#define REPLAY_THREADED 1
#else
#define REPLAY_THREADED 0
#endif

/* The walk's state between the two functions. */
typedef struct walk {
    double *value;
    const sop_link *l;
    double *d;
    const double *c;
    const uint8_t *op;
    size_t i;     /* the next node */
    int switches; /* kinks whose branch changed so far */
} walk;

#define X1_ (value[l[0].arg]) /* a unary op's operand */
#define X2_ (value[l[1].arg]) /* a binary op's first operand */
#define Y2_ (value[l[0].arg]) /* and its second */
#define C_ (*c)
#define REPLAY_V(K, x, y, cc)                                                   \
    CASE(K) {                                                                   \
        double v_, da_, db_;                                                    \
        sop_eval(K, x, y, cc, &v_, &da_, &db_);                                 \
        value[i] = v_;                                                          \
        l += sop_nargs(K);                                                      \
        d += sop_nargs(K);                                                      \
        c += sop_has_c(K);                                                      \
        NEXT;                                                                   \
    }
#define REPLAY_VA(K, cc)                                                        \
    CASE(K) {                                                                   \
        double v_, da_, db_;                                                    \
        sop_eval(K, X1_, 0.0, cc, &v_, &da_, &db_);                             \
        value[i] = v_;                                                          \
        d[0] = da_;                                                             \
        l += 1;                                                                 \
        d += 1;                                                                 \
        c += sop_has_c(K);                                                      \
        NEXT;                                                                   \
    }
#define REPLAY_VAB(K)                                                           \
    CASE(K) {                                                                   \
        double v_, da_, db_;                                                    \
        sop_eval(K, X2_, Y2_, 0.0, &v_, &da_, &db_);                            \
        value[i] = v_;                                                          \
        d[1] = da_;                                                             \
        d[0] = db_;                                                             \
        l += 2;                                                                 \
        d += 2;                                                                 \
        NEXT;                                                                   \
    }
#define REPLAY_KINK_VA(K)                                                       \
    CASE(K) {                                                                   \
        double v_, da_, db_;                                                    \
        sop_eval(K, X1_, 0.0, 0.0, &v_, &da_, &db_);                            \
        value[i] = v_;                                                          \
        switches += d[0] != da_;                                                \
        d[0] = da_;                                                             \
        l += 1;                                                                 \
        d += 1;                                                                 \
        NEXT;                                                                   \
    }
#define REPLAY_KINK_VAB(K)                                                      \
    CASE(K) {                                                                   \
        double v_, da_, db_;                                                    \
        sop_eval(K, X2_, Y2_, 0.0, &v_, &da_, &db_);                            \
        value[i] = v_;                                                          \
        switches += d[1] != da_;                                                \
        d[1] = da_;                                                             \
        d[0] = db_;                                                             \
        l += 2;                                                                 \
        d += 2;                                                                 \
        NEXT;                                                                   \
    }

#define WALK_STATE_IN                                                                   \
    double *restrict value = w->value;                                              \
    const sop_link *restrict l = w->l;                                              \
    double *restrict d = w->d;                                                      \
    const double *restrict c = w->c;                                                \
    const uint8_t *restrict op = w->op;                                             \
    size_t i = w->i;                                                                \
    int switches = w->switches
#define WALK_STATE_OUT                                                                  \
    do {                                                                            \
        w->l = l;                                                                   \
        w->d = d;                                                                   \
        w->c = c;                                                                   \
        w->i = i;                                                                   \
        w->switches = switches;                                                     \
    } while (0)

/* Where the handlers lie in memory matters to a threaded walk: the same
 * walk_fast ran at 0.85 and at 1.0 ns per op in two builds that differed
 * only in code elsewhere in the library, which had moved it (AMD EPYC,
 * n = 1e4, the best of 3000 replays).  So it starts on a cache line and,
 * with GCC, every handler on a 32-byte block (-falign-labels for this
 * function alone, as an attribute: meson gives flags to a whole target,
 * not to one source): 0.82-0.90 ns, build after build; 16 bytes measured
 * as the unaligned, 64 a little slower than 32.  Clang has no such option. */
#if defined(__GNUC__) && !defined(__clang__)
#define WALK_ALIGN __attribute__((noinline, aligned(64), optimize("align-labels=32")))
#else
#define WALK_ALIGN __attribute__((noinline, aligned(64)))
#endif

/* Runs the fast ops from node w->i on; stops at the first other op (or the
 * end mark), with w->i at it. */
WALK_ALIGN static void walk_fast(walk *w)
{
    WALK_STATE_IN;
#if REPLAY_THREADED
#define CASE(K) L_##K:
#define NEXT goto *label[op[++i]]
#define L_(K) [K] = &&L_##K
    static const void *const label[SOP_COUNT + 1] = {
        L_(SOP_VAR), L_(SOP_CONST), L_(SOP_ADD), L_(SOP_SUB), L_(SOP_MUL), L_(SOP_DIV),
        [SOP_POW] = &&out, L_(SOP_MAX), L_(SOP_MIN), L_(SOP_ADD_C), L_(SOP_MUL_C),
        L_(SOP_CSUB), L_(SOP_DIV_C), L_(SOP_CDIV), [SOP_POW_C] = &&out, L_(SOP_NEG),
        [SOP_EXP] = &&out, [SOP_LOG] = &&out, [SOP_SQRT] = &&out, [SOP_SIN] = &&out,
        [SOP_COS] = &&out, [SOP_TAN] = &&out, [SOP_TANH] = &&out, [SOP_SIGMOID] = &&out,
        L_(SOP_RELU), L_(SOP_ABS), L_(SOP_SQUARE), [SOP_COUNT] = &&out,
    };
#undef L_
    goto *label[op[i]];
#else
#define CASE(K) case K:
#define NEXT break
    for (;; i++) switch (op[i]) {
#endif
    CASE(SOP_VAR)
    CASE(SOP_CONST) NEXT;
    REPLAY_V(SOP_ADD, X2_, Y2_, 0.0)
    REPLAY_V(SOP_SUB, X2_, Y2_, 0.0)
    REPLAY_VAB(SOP_MUL)
    REPLAY_VAB(SOP_DIV)
    REPLAY_KINK_VAB(SOP_MAX)
    REPLAY_KINK_VAB(SOP_MIN)
    REPLAY_V(SOP_ADD_C, X1_, 0.0, C_)
    REPLAY_V(SOP_MUL_C, X1_, 0.0, C_)
    REPLAY_V(SOP_CSUB, X1_, 0.0, C_)
    REPLAY_V(SOP_DIV_C, X1_, 0.0, C_)
    REPLAY_VA(SOP_CDIV, C_)
    REPLAY_V(SOP_NEG, X1_, 0.0, 0.0)
    REPLAY_KINK_VA(SOP_RELU)
    REPLAY_KINK_VA(SOP_ABS)
    REPLAY_VA(SOP_SQUARE, 0.0)
#if !REPLAY_THREADED
    default: goto out; /* a slow op or the end mark */
    }
#endif
out:
    WALK_STATE_OUT;
}
#undef CASE
#undef NEXT

/* Evaluates the slow op at node w->i and steps past it. */
__attribute__((noinline)) static void walk_slow(walk *w)
{
    WALK_STATE_IN;
#define CASE(K) case K:
#define NEXT goto done
    switch (op[i]) {
    REPLAY_VAB(SOP_POW)
    REPLAY_VA(SOP_POW_C, C_)
    REPLAY_VA(SOP_EXP, 0.0)
    REPLAY_VA(SOP_LOG, 0.0)
    REPLAY_VA(SOP_SQRT, 0.0)
    REPLAY_VA(SOP_SIN, 0.0)
    REPLAY_VA(SOP_COS, 0.0)
    REPLAY_VA(SOP_TAN, 0.0)
    REPLAY_VA(SOP_TANH, 0.0)
    REPLAY_VA(SOP_SIGMOID, 0.0)
    default: assert(0 && "walk_slow: not a slow op"); break;
    }
done:
    i++;
    WALK_STATE_OUT;
}
#undef CASE
#undef NEXT

int ad__scalar_check_vars(const char *fn, const struct ad_scalar_tape *st, const ad_tape *tape,
                          int n, const ad_scalar *vars, bool *consecutive)
{
    /* Variables recorded one after another (the usual case) have
     * consecutive ids: their values then go in as one run, without a
     * second pass over the handles. */
    bool run = handles_consecutive(st, tape, vars, n);
    if (run) {
        /* every one a variable: bytes, vectorised (through a pointer: an
         * index id + j, which might wrap in 32 bits, kept it a byte at a
         * time) */
        const uint8_t *o = st->op + vars[0].id;
        unsigned bad = 0;
        for (int j = 0; j < n; j++) bad |= o[j] ^ SOP_VAR;
        run = bad == 0;
    }
    for (int j = 0; j < n && !run; j++) {
        if (vars[j].tape != tape || !live(st, vars[j]) || st->op[vars[j].id] != SOP_VAR)
            return ad__err(fn, "vars[%d] is not a live variable of this tape", j);
    }
    *consecutive = run;
    return 0;
}

int ad__scalar_replay_run(struct ad_scalar_tape *st, int n, const ad_scalar *vars, bool consecutive,
                          const double *values)
{
    if (consecutive && n > 0) {
        /* a loop, not memcpy: memcpy's streaming stores for a large n
         * would send the values past the cache the walk reads them from */
        double *dst = st->value + vars[0].id;
        for (int j = 0; j < n; j++) dst[j] = values[j];
    } else
        for (int j = 0; j < n; j++) st->value[vars[j].id] = values[j];
    st->op[st->n] = SOP_COUNT; /* the end mark */
    walk w = {st->value, st->link, st->d, st->c, st->op, 0, 0};
    for (;;) {
        walk_fast(&w);
        if (w.op[w.i] == SOP_COUNT) break;
        walk_slow(&w);
    }
    assert(w.l == st->link + st->ne && w.c == st->c + st->nc);
    st->nadj = 0; /* the adjoints belong to the old point */
    return w.switches;
}

int ad_scalar_replay(ad_tape *tape, int n, const ad_scalar *vars, const double *values)
{
    static const char *fn = "ad_scalar_replay";
    if (ad__check_tape(fn, tape)) return -1;
    struct ad_scalar_tape *st = get(tape);
    if (n < 0 || (n > 0 && (!vars || !values))) return ad__err(fn, "need n >= 0 and arrays");
    bool consecutive;
    if (ad__scalar_check_vars(fn, st, tape, n, vars, &consecutive)) return -1;
    if (!st || st->n == 0) return 0; /* nothing recorded (a reserve makes no arrays for 0) */
    return ad__scalar_replay_run(st, n, vars, consecutive, values);
}
#undef REPLAY_THREADED
#undef WALK_ALIGN
#undef WALK_STATE_IN
#undef WALK_STATE_OUT
#undef X1_
#undef X2_
#undef Y2_
#undef C_
#undef REPLAY_V
#undef REPLAY_VA
#undef REPLAY_VAB
#undef REPLAY_KINK_VA
#undef REPLAY_KINK_VAB
