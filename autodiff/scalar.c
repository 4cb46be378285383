/* autodiff/scalar.c - the scalar API (scalar.h).
 *
 * Each recorded double is one node of a tape that hangs off the ad_tape
 * (ad__scalar_slot).  Node i has
 *
 *     value[i]     its value, computed when it is recorded
 *     op[i]        what it computes (SOP_*)
 *     its edges    one per operand, appended in recording order to two
 *                  parallel arrays: link[k] = {arg, node = i} and d[k],
 *                  the local partial d value[i] / d value[arg], also
 *                  computed at record time; a binary op's second operand
 *                  comes first (see the sweep).  Leaves have none.
 *     a constant   for the ops with one (x + c, c / x, ...): appended to
 *                  c[] in recording order
 *     adj[i]       its adjoint d y / d value[i] after a backward from y
 *
 * Recording appends, so operands always have smaller ids than the nodes
 * that use them, the tape order is a topological order and the edges are
 * sorted by node.  The reverse sweep is then the chain rule in its plainest
 * form, one multiply-add per edge, walked backwards:
 *
 *     adj[y] = 1;  for each edge k from the last of y down to 0:
 *                      adj[link[k].arg] += adj[link[k].node] d[k]
 *
 * which reaches a node's edges after every edge of every node that
 * consumed it, so adj[node] is complete (summed over all uses) when its
 * edges pass it on.
 *
 * Speed is the point of this API (it competes with operator-overloading
 * tools such as ADOL-C), so recording one op is a few checks on predictable
 * branches and a store per array it touches, and the sweep has no per-op
 * dispatch: the partials were computed at record time, which needs the
 * operand values then anyway.  Arrays grow by doubling and a reset keeps
 * them, so a loop that records the same computation every step allocates
 * only at first.
 *
 * Why edges and not a node record with two operand slots (the layout
 * before): a unary op or a leaf then carried an absent operand that the
 * sweep had to send somewhere (dump slots, selected without a branch, since
 * which nodes are unary follows the program), and the sweep worked per
 * node, so one node's arithmetic waited on the node before it.  Per edge,
 * every iteration is the same few instructions, only true data
 * dependencies (an edge into a node whose adjoint is still being summed)
 * serialise them, and there is nothing to dump.  On the extended
 * Rosenbrock function the sweep took 35 % less time and a node's bytes
 * went from 33 (plus 8 of adjoint) to 9 plus 16 per operand and 8 per
 * constant.  The partials are an array of their own, not a field beside
 * the ids: the replay rewrites partials but never ids, so the ids' cache
 * lines stay clean and only the partials' are written back to memory.
 */
#include <stdint.h>

#include "formulas.h"
#include "internal.h"

#define UNLIKELY(x) __builtin_expect(!!(x), 0)
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

/* ---- storage ------------------------------------------------------------------ */

static struct ad_scalar_tape *get(const ad_tape *tape)
{
    return *ad__scalar_slot((ad_tape *)tape);
}

/* Where each array starts within its allocation.  Large arrays get their
 * own mmap'd blocks, which all begin at the same offset in a page, so
 * value[i], adj[i] and the edges would share their low 12 address bits:
 * the CPU then takes the load of a just-recorded value for one that may
 * depend on the stores to the other arrays at the same index (4K
 * aliasing), and recording ran 2-3 times slower on tapes of 10^7 nodes.
 * Distinct offsets modulo 4096, in whole cache lines, avoid it. */
enum { STAGGER = 9 * 64 };
enum { ARR_VALUE, ARR_LINK, ARR_D, ARR_CONST, ARR_ADJ, ARR_OP };

/* Resizes an array that starts `k * STAGGER` bytes into its block (p is
 * NULL or such a start) to hold `bytes`, keeping its contents.  NULL when
 * out of memory, with p untouched. */
static void *grow_array(void *p, size_t bytes, int k)
{
    size_t off = (size_t)k * STAGGER;
    unsigned char *base = p ? (unsigned char *)p - off : NULL;
    unsigned char *q = ad__realloc(base, bytes + off);
    return q ? q + off : NULL;
}

static void free_array(void *p, int k)
{
    if (p) ad__free((unsigned char *)p - (size_t)k * STAGGER);
}

/* A generation for handles: the low bits of a fresh process-wide stamp,
 * never the invalid handle's 0. */
static uint32_t new_gen(void)
{
    uint32_t g = (uint32_t)ad__next_gen();
    return g ? g : 1;
}

/* Grows every array to hold at least `need` nodes (doubling, from 1024):
 * 2 need edges (a node has at most two) and need constants, so recording
 * checks one capacity.  Pages never written are never touched, so the
 * room for edges and constants a program does not use costs address space,
 * not memory.
 * Each array is resized on its own; when one fails, those already resized
 * are simply larger than cap, and the tape stays consistent. */
static int reserve(const char *fn, ad_tape *tape, size_t need)
{
    struct ad_scalar_tape **slot = ad__scalar_slot(tape), *st = *slot;
    /* Checked first, so an impossible request allocates nothing. */
    if (need > (size_t)SOP_MAX_NODES)
        return ad__err(fn, "scalar tape is full (%lu nodes at most)",
                       (unsigned long)SOP_MAX_NODES);
    if (!st) {
        st = ad__calloc(1, sizeof *st);
        if (!st) return ad__err(fn, "out of memory recording a scalar");
        st->allocs = 1;
        st->gen = new_gen();
        *slot = st;
    }
    if (need <= st->cap) return 0;
    size_t cap = st->cap ? st->cap : 1024;
    while (cap < need) cap = cap > (size_t)SOP_MAX_NODES / 2 ? (size_t)SOP_MAX_NODES : cap * 2;
    if (cap > (SIZE_MAX - 8 * STAGGER) / (2 * sizeof(double)))
        return ad__err(fn, "out of memory recording a scalar");

#define GROW(field, count, k)                                                   \
    do {                                                                        \
        void *p_ = grow_array(st->field, (count) * sizeof *st->field, k);       \
        if (!p_) return ad__err(fn, "out of memory recording a scalar");        \
        st->field = p_;                                                         \
        st->allocs++;                                                           \
    } while (0)
    GROW(value, cap, ARR_VALUE);
    GROW(link, 2 * cap, ARR_LINK);
    GROW(d, 2 * cap, ARR_D);
    GROW(c, cap, ARR_CONST);
    GROW(adj, cap, ARR_ADJ);
    GROW(op, cap + 1, ARR_OP); /* + the replay's end mark */
#undef GROW
    st->cap = cap;
    return 0;
}

void ad__scalar_reset(ad_tape *tape)
{
    struct ad_scalar_tape *st = get(tape);
    if (!st) return;
    st->n = st->ne = st->nc = 0;
    st->nadj = 0;
    st->gen = new_gen();
}

void ad__scalar_free(ad_tape *tape)
{
    struct ad_scalar_tape **slot = ad__scalar_slot(tape), *st = *slot;
    if (!st) return;
    free_array(st->value, ARR_VALUE);
    free_array(st->link, ARR_LINK);
    free_array(st->d, ARR_D);
    free_array(st->c, ARR_CONST);
    free_array(st->adj, ARR_ADJ);
    free_array(st->op, ARR_OP);
    ad__free(st);
    *slot = NULL;
}

/* ---- handles ------------------------------------------------------------------- */

static const ad_scalar INVALID = {NULL, 0, 0};

/* A handle is live when its tape's scalar state is of the same generation
 * (a fresh stamp at every reset, from the process-wide counter, so a handle
 * kept across a reset never passes for the node recorded at its id since)
 * and its id was recorded. */
static bool live(const struct ad_scalar_tape *st, ad_scalar s)
{
    return st && s.gen == st->gen && s.id < st->n;
}

/* Why handle s cannot be used (a message is set), for the slow paths.  An
 * invalid handle comes from a failed call whose message says what went
 * wrong, so that message is kept. */
COLD static void diagnose(const char *fn, ad_scalar s)
{
    if (!s.tape) {
        if (!ad__has_error()) ad__err(fn, "invalid scalar handle (tape is NULL)");
        return;
    }
    if (!ad__tape_alive(s.tape))
        ad__errc(AD_ERR_STALE, fn, "scalar handle belongs to a tape that was freed (ad_tape_free)");
    else
        ad__errc(AD_ERR_STALE, fn, "scalar handle is stale: it was recorded before ad_tape_reset; keep "
                    "its value (ad_scalar_value) and make a new variable to carry it "
                    "across steps");
}

COLD static ad_scalar bad1(const char *fn, ad_scalar x)
{
    diagnose(fn, x);
    return INVALID;
}

COLD static ad_scalar bad2(const char *fn, ad_scalar x, ad_scalar y)
{
    if (!x.tape || !y.tape) diagnose(fn, x.tape ? y : x);
    else if (x.tape != y.tape) ad__err(fn, "operands belong to different tapes");
    else diagnose(fn, live(get(x.tape), x) ? y : x);
    return INVALID;
}

/* Makes room for one more node (the arrays are full). */
COLD static int grow1(const char *fn, ad_tape *tape, struct ad_scalar_tape *st)
{
    return reserve(fn, tape, st->n + 1);
}

/* Appends a node computing op from operands ia, ib (ids, unused where the
 * op has fewer) whose values are x, y, and constant c: evaluates it and
 * stores value and op, an edge per operand (b's first) and the constant.
 * Everything that depends on op folds away once inlined. */
HOT ad_scalar push(const char *fn, ad_tape *tape, struct ad_scalar_tape *st, int op,
                   uint32_t ia, double x, uint32_t ib, double y, double c)
{
    if (UNLIKELY(st->n == st->cap) && grow1(fn, tape, st)) return INVALID;
    size_t i = st->n, k = st->ne;
    double v, da, db;
    sop_eval(op, x, y, c, &v, &da, &db);
    st->value[i] = v;
    st->op[i] = (uint8_t)op;
    sop_link *l = st->link + k;
    double *d = st->d + k;
    if (sop_nargs(op) == 2) {
        l[0] = (sop_link){ib, (uint32_t)i};
        l[1] = (sop_link){ia, (uint32_t)i};
        d[0] = db;
        d[1] = da;
    } else if (sop_nargs(op) == 1) {
        l[0] = (sop_link){ia, (uint32_t)i};
        d[0] = da;
    }
    st->ne = k + (size_t)sop_nargs(op);
    if (sop_has_c(op)) st->c[st->nc++] = c;
    st->n = i + 1;
    return (ad_scalar){tape, (uint32_t)i, st->gen};
}

HOT ad_scalar rec1(const char *fn, int op, ad_scalar x, double c)
{
    struct ad_scalar_tape *st;
    if (UNLIKELY(!x.tape) || UNLIKELY(!live(st = get(x.tape), x))) return bad1(fn, x);
    return push(fn, x.tape, st, op, x.id, st->value[x.id], 0, 0.0, c);
}

HOT ad_scalar rec2(const char *fn, int op, ad_scalar x, ad_scalar y)
{
    struct ad_scalar_tape *st;
    if (UNLIKELY(!x.tape || x.tape != y.tape) ||
        UNLIKELY(!live(st = get(x.tape), x) || !live(st, y)))
        return bad2(fn, x, y);
    return push(fn, x.tape, st, op, x.id, st->value[x.id], y.id, st->value[y.id], 0.0);
}

HOT ad_scalar leaf(const char *fn, ad_tape *tape, int op, double value)
{
    if (ad__check_tape(fn, tape)) return INVALID;
    struct ad_scalar_tape *st = get(tape);
    if (UNLIKELY(!st)) {
        if (reserve(fn, tape, 1)) return INVALID;
        st = get(tape);
    }
    return push(fn, tape, st, op, 0, 0.0, 0, 0.0, value);
}

/* ---- public ----------------------------------------------------------------------- */

ad_scalar ad_scalar_var(ad_tape *tape, double value)
{
    return leaf("ad_scalar_var", tape, SOP_VAR, value);
}

ad_scalar ad_scalar_const(ad_tape *tape, double value)
{
    return leaf("ad_scalar_const", tape, SOP_CONST, value);
}

bool ad_scalar_ok(ad_scalar s) { return s.tape && live(get(s.tape), s); }

/* s's scalar tape, or NULL: for the zero handle quietly, for a stale one
 * with an error saying why. */
static struct ad_scalar_tape *tape_of(const char *fn, ad_scalar s)
{
    if (!s.tape) return NULL;
    struct ad_scalar_tape *st = get(s.tape);
    if (live(st, s)) return st;
    diagnose(fn, s);
    return NULL;
}

double ad_scalar_value(ad_scalar s)
{
    struct ad_scalar_tape *st = tape_of("ad_scalar_value", s);
    return st ? st->value[s.id] : NAN;
}

/* d y / d node id from the last sweep (which computes it for constants too,
 * but no gradient flows into a constant as far as callers see). */
static inline double grad_at(const uint8_t *op, const double *adj, size_t nadj, uint32_t id)
{
    return id >= nadj || op[id] == SOP_CONST ? 0.0 : adj[id];
}

static double grad_of(const struct ad_scalar_tape *st, uint32_t id)
{
    return grad_at(st->op, st->adj, st->nadj, id);
}

double ad_scalar_grad(ad_scalar s)
{
    struct ad_scalar_tape *st = tape_of("ad_scalar_grad", s);
    return st ? grad_of(st, s.id) : NAN;
}

size_t ad_scalar_count(const ad_tape *tape)
{
    const struct ad_scalar_tape *st = tape ? get(tape) : NULL;
    return st ? st->n : 0;
}

size_t ad_scalar_capacity(const ad_tape *tape)
{
    const struct ad_scalar_tape *st = tape ? get(tape) : NULL;
    return st ? st->cap : 0;
}

size_t ad_scalar_alloc_count(const ad_tape *tape)
{
    const struct ad_scalar_tape *st = tape ? get(tape) : NULL;
    return st ? st->allocs : 0;
}

int ad_scalar_reserve(ad_tape *tape, size_t n)
{
    if (!tape) return ad__err("ad_scalar_reserve", "tape is NULL");
    return reserve("ad_scalar_reserve", tape, n);
}

static int check_y(const char *fn, ad_scalar y, struct ad_scalar_tape **st)
{
    if (!y.tape) {
        diagnose(fn, y);
        return -1;
    }
    *st = get(y.tape);
    if (!live(*st, y)) {
        diagnose(fn, y);
        return -1;
    }
    return 0;
}

/* Edges of the nodes 0..top: all of them for the last node, else the
 * first edge of a later node, found by bisection (edges are sorted by
 * node). */
static size_t edges_upto(const struct ad_scalar_tape *st, uint32_t top)
{
    if ((size_t)top + 1 == st->n) return st->ne;
    size_t lo = 0, hi = st->ne;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (st->link[mid].node <= top) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* The reverse sweep from node top: every edge of the nodes up to top, last
 * first.  A node's adjoint is complete when its edges are reached (every
 * consumer has a larger id, so its edges come later), and each edge adds
 * its share into its operand's adjoint.  A binary node's edges were stored
 * b first, so its a edge adds first: adjoints sum their contributions in
 * the order the node-by-node sweep before this one did, and gradients kept
 * their bits.
 *
 * An edge out of a node whose adjoint is exactly 0 (one y does not depend
 * on, or reached only through zero partials) adds 0, not 0 * d: that keeps
 * an infinite partial of such a node (sqrt at 0, say) from adding
 * 0 * inf = NaN into its operands' adjoints.  It is a select, not a
 * branch; adding +0 leaves every adjoint's bits as they are (an adjoint
 * starts at +0 and never becomes -0, since +0 + -0 = +0). */
static void sweep(struct ad_scalar_tape *st, uint32_t top)
{
    double *restrict adj = st->adj;
    const sop_link *restrict l = st->link;
    const double *restrict d = st->d;
    memset(adj, 0, ((size_t)top + 1) * sizeof *adj);
    adj[top] = 1.0;
    for (size_t k = edges_upto(st, top); k-- > 0;) {
        double g = adj[l[k].node];
        double share = g * d[k];
        adj[l[k].arg] += g == 0.0 ? 0.0 : share;
    }
    st->nadj = (size_t)top + 1;
}

int ad_scalar_backward(ad_scalar y)
{
    struct ad_scalar_tape *st;
    if (check_y("ad_scalar_backward", y, &st)) return -1;
    sweep(st, y.id);
    return 0;
}

int ad_scalar_gradient(ad_scalar y, int n, const ad_scalar *xs, double *grad)
{
    static const char *fn = "ad_scalar_gradient";
    struct ad_scalar_tape *st;
    if (check_y(fn, y, &st)) return -1;
    if (n < 0 || (n > 0 && (!xs || !grad)))
        return ad__err(fn, "need n >= 0 and non-NULL xs and grad arrays (n = %d)", n);
    for (int k = 0; k < n; k++) {
        if (!xs[k].tape) {
            diagnose(fn, xs[k]);
            return -1;
        }
        if (xs[k].tape != y.tape)
            return ad__err(fn, "xs[%d] belongs to a different tape than y", k);
        if (!live(st, xs[k]))
            return ad__err(fn, "xs[%d] is stale (recorded before ad_tape_reset)", k);
    }
    sweep(st, y.id);
    /* The tape's fields in locals: grad might alias them for all the
     * compiler knows, and would make it load them again per store. */
    const uint8_t *op = st->op;
    const double *adj = st->adj;
    size_t nadj = st->nadj;
    for (int k = 0; k < n; k++)
        grad[k] = grad_at(op, adj, nadj, xs[k].id);
    return 0;
}

/* ---- ops ----------------------------------------------------------------------------- */

ad_scalar ad_sadd(ad_scalar a, ad_scalar b) { return rec2("ad_sadd", SOP_ADD, a, b); }
ad_scalar ad_ssub(ad_scalar a, ad_scalar b) { return rec2("ad_ssub", SOP_SUB, a, b); }
ad_scalar ad_smul(ad_scalar a, ad_scalar b) { return rec2("ad_smul", SOP_MUL, a, b); }
ad_scalar ad_sdiv(ad_scalar a, ad_scalar b) { return rec2("ad_sdiv", SOP_DIV, a, b); }
ad_scalar ad_spow(ad_scalar a, ad_scalar b) { return rec2("ad_spow", SOP_POW, a, b); }
ad_scalar ad_smax(ad_scalar a, ad_scalar b) { return rec2("ad_smax", SOP_MAX, a, b); }
ad_scalar ad_smin(ad_scalar a, ad_scalar b) { return rec2("ad_smin", SOP_MIN, a, b); }

ad_scalar ad_sadd_c(ad_scalar a, double c) { return rec1("ad_sadd_c", SOP_ADD_C, a, c); }
ad_scalar ad_smul_c(ad_scalar a, double c) { return rec1("ad_smul_c", SOP_MUL_C, a, c); }
ad_scalar ad_ssub_c(ad_scalar a, double c) { return rec1("ad_ssub_c", SOP_ADD_C, a, -c); }
ad_scalar ad_scsub(double c, ad_scalar a) { return rec1("ad_scsub", SOP_CSUB, a, c); }
ad_scalar ad_sdiv_c(ad_scalar a, double c) { return rec1("ad_sdiv_c", SOP_DIV_C, a, c); }
ad_scalar ad_scdiv(double c, ad_scalar a) { return rec1("ad_scdiv", SOP_CDIV, a, c); }
ad_scalar ad_spow_c(ad_scalar a, double c) { return rec1("ad_spow_c", SOP_POW_C, a, c); }

ad_scalar ad_sneg(ad_scalar x) { return rec1("ad_sneg", SOP_NEG, x, 0.0); }
ad_scalar ad_sexp(ad_scalar x) { return rec1("ad_sexp", SOP_EXP, x, 0.0); }
ad_scalar ad_slog(ad_scalar x) { return rec1("ad_slog", SOP_LOG, x, 0.0); }
ad_scalar ad_ssqrt(ad_scalar x) { return rec1("ad_ssqrt", SOP_SQRT, x, 0.0); }
ad_scalar ad_ssin(ad_scalar x) { return rec1("ad_ssin", SOP_SIN, x, 0.0); }
ad_scalar ad_scos(ad_scalar x) { return rec1("ad_scos", SOP_COS, x, 0.0); }
ad_scalar ad_stan(ad_scalar x) { return rec1("ad_stan", SOP_TAN, x, 0.0); }
ad_scalar ad_stanh(ad_scalar x) { return rec1("ad_stanh", SOP_TANH, x, 0.0); }
ad_scalar ad_ssigmoid(ad_scalar x) { return rec1("ad_ssigmoid", SOP_SIGMOID, x, 0.0); }
ad_scalar ad_srelu(ad_scalar x) { return rec1("ad_srelu", SOP_RELU, x, 0.0); }
ad_scalar ad_sabs(ad_scalar x) { return rec1("ad_sabs", SOP_ABS, x, 0.0); }
ad_scalar ad_ssquare(ad_scalar x) { return rec1("ad_ssquare", SOP_SQUARE, x, 0.0); }

/* ---- replay ---------------------------------------------------------------------- */

/* The replay re-evaluates node after node in tape order, with a cursor e
 * into the edges (l into their ids: b at l[0], a at l[1] for a binary op,
 * a at l[0] for a unary one; d into their partials, in step) and one c
 * into the constants.  Each op has its own handler, which calls sop_eval with a
 * constant op (so it folds to that op's formula, still defined once,
 * above), loads only the operands the op has and stores only what can
 * change:
 *
 *   REPLAY_V    ops whose partials are constants (x + y, c - x, x c ...):
 *               the partials recorded are still right; only the value
 *   REPLAY_VA   one operand: the value and its partial
 *   REPLAY_VAB  two operands: the value and both partials
 *   REPLAY_KINK_* the same for ops whose partials jump (max, min, relu,
 *               abs): a changed partial of the first operand means the
 *               other branch was taken, which is counted for the caller
 *
 * With GCC and clang the handlers are threaded: each ends by jumping
 * straight to the next node's handler through a table of label addresses
 * (the labels-as-values extension), and an end mark after the last op
 * (op[n] = SOP_COUNT, the arrays have room for it) stops the walk, so a
 * node costs one indirect jump and no loop test or bounds check; this
 * predicts better too, as each handler's jump learns what follows its own
 * op.  Other compilers (and -DAD_SCALAR_REPLAY_SWITCH, which tests this
 * path) get the same handlers as the cases of a switch in a loop.  A generic loop (test whether a and b exist, fetch the constant,
 * dispatch inside sop_eval, store all three) ran at about half the
 * switch's speed on the extended Rosenbrock function. */
#if (defined(__GNUC__) || defined(__clang__)) && !defined(AD_SCALAR_REPLAY_SWITCH)
#define REPLAY_THREADED 1
#define CASE(K) L_##K:
#define NEXT goto *label[op[++i]]
#else
#define REPLAY_THREADED 0
#define CASE(K) case K:
#define NEXT break
#endif
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

int ad_scalar_replay(ad_tape *tape, int n, const ad_scalar *vars, const double *values)
{
    static const char *fn = "ad_scalar_replay";
    if (!tape) return ad__err(fn, "tape is NULL");
    struct ad_scalar_tape *st = get(tape);
    if (n < 0 || (n > 0 && (!vars || !values))) return ad__err(fn, "need n >= 0 and arrays");
    for (int j = 0; j < n; j++)
        if (vars[j].tape != tape || !live(st, vars[j]) || st->op[vars[j].id] != SOP_VAR)
            return ad__err(fn, "vars[%d] is not a live variable of this tape", j);
    if (!st) return 0;
    double *restrict value = st->value;
    const sop_link *restrict l = st->link;
    double *restrict d = st->d;
    const double *restrict c = st->c;
    uint8_t *restrict op = st->op;
    for (int j = 0; j < n; j++) value[vars[j].id] = values[j];
    /* Set before the walk, so that st is not live in it: the handlers that
     * call the C library need all the registers a call preserves. */
    st->nadj = 0; /* the adjoints belong to the old point */
    int switches = 0;
    size_t i = 0;
#if REPLAY_THREADED
#define L_(K) [K] = &&L_##K
    static const void *const label[SOP_COUNT + 1] = {
        L_(SOP_VAR), L_(SOP_CONST), L_(SOP_ADD), L_(SOP_SUB), L_(SOP_MUL), L_(SOP_DIV),
        L_(SOP_POW), L_(SOP_MAX), L_(SOP_MIN), L_(SOP_ADD_C), L_(SOP_MUL_C), L_(SOP_CSUB),
        L_(SOP_DIV_C), L_(SOP_CDIV), L_(SOP_POW_C), L_(SOP_NEG), L_(SOP_EXP), L_(SOP_LOG),
        L_(SOP_SQRT), L_(SOP_SIN), L_(SOP_COS), L_(SOP_TAN), L_(SOP_TANH), L_(SOP_SIGMOID),
        L_(SOP_RELU), L_(SOP_ABS), L_(SOP_SQUARE), L_(SOP_COUNT),
    };
#undef L_
    op[st->n] = SOP_COUNT; /* the end mark */
    goto *label[op[0]];
#else
    for (; i < st->n; i++) switch (op[i]) {
#endif
    CASE(SOP_VAR)
    CASE(SOP_CONST) NEXT;
    REPLAY_V(SOP_ADD, X2_, Y2_, 0.0)
    REPLAY_V(SOP_SUB, X2_, Y2_, 0.0)
    REPLAY_VAB(SOP_MUL)
    REPLAY_VAB(SOP_DIV)
    REPLAY_VAB(SOP_POW)
    REPLAY_KINK_VAB(SOP_MAX)
    REPLAY_KINK_VAB(SOP_MIN)
    REPLAY_V(SOP_ADD_C, X1_, 0.0, C_)
    REPLAY_V(SOP_MUL_C, X1_, 0.0, C_)
    REPLAY_V(SOP_CSUB, X1_, 0.0, C_)
    REPLAY_V(SOP_DIV_C, X1_, 0.0, C_)
    REPLAY_VA(SOP_CDIV, C_)
    REPLAY_VA(SOP_POW_C, C_)
    REPLAY_V(SOP_NEG, X1_, 0.0, 0.0)
    REPLAY_VA(SOP_EXP, 0.0)
    REPLAY_VA(SOP_LOG, 0.0)
    REPLAY_VA(SOP_SQRT, 0.0)
    REPLAY_VA(SOP_SIN, 0.0)
    REPLAY_VA(SOP_COS, 0.0)
    REPLAY_VA(SOP_TAN, 0.0)
    REPLAY_VA(SOP_TANH, 0.0)
    REPLAY_VA(SOP_SIGMOID, 0.0)
    REPLAY_KINK_VA(SOP_RELU)
    REPLAY_KINK_VA(SOP_ABS)
    REPLAY_VA(SOP_SQUARE, 0.0)
#if REPLAY_THREADED
    L_SOP_COUNT:
#else
    default: break; /* unreachable: every op has a case */
    }
#endif
    return switches;
}
#undef REPLAY_THREADED
#undef CASE
#undef NEXT
#undef X1_
#undef X2_
#undef Y2_
#undef C_
#undef REPLAY_V
#undef REPLAY_VA
#undef REPLAY_VAB
#undef REPLAY_KINK_VA
#undef REPLAY_KINK_VAB
