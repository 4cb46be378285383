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
#include "scalar_impl.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* ---- storage ------------------------------------------------------------------ */

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
 * NULL or such a start) to hold `bytes`, keeping its first `keep` bytes
 * (the part in use).  NULL when out of memory, with p untouched.
 *
 * A block of AD__HUGE_MIN bytes or more is a new allocation, the kept part
 * copied and the old block freed, rather than a realloc: the allocator
 * advises a new large block for transparent huge pages before anything
 * touches it (alloc.c), whereas realloc moves a large block's pages with
 * mremap, which leaves those already touched 4 KB (a 10^6-variable
 * Rosenbrock tape, 275 MB, had 6 MB in huge pages, and the first record
 * made 140,000 page faults).  Copying only the kept part also leaves the
 * pages reserved but never written (edges beyond the one-per-node most
 * programs record) untouched, as realloc did. */
static void *grow_array(void *p, size_t bytes, size_t keep, int k)
{
    size_t off = (size_t)k * STAGGER;
    unsigned char *base = p ? (unsigned char *)p - off : NULL;
    if (bytes + off < AD__HUGE_MIN || !p) {
        unsigned char *q = ad__realloc(base, bytes + off);
        return q ? q + off : NULL;
    }
    unsigned char *q = ad__malloc(bytes + off);
    if (!q) return NULL;
    memcpy(q + off, p, keep);
    ad__free(base);
    return q + off;
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

#define GROW(field, count, used, k)                                             \
    do {                                                                        \
        void *p_ = grow_array(st->field, (count) * sizeof *st->field,           \
                              (used) * sizeof *st->field, k);                   \
        if (!p_) return ad__err(fn, "out of memory recording a scalar");        \
        st->field = p_;                                                         \
        st->allocs++;                                                           \
    } while (0)
    /* what is in use: n nodes (and the end mark after them), ne edges,
     * nc constants, the adjoints of the last backward */
    GROW(value, cap, st->n, ARR_VALUE);
    GROW(link, 2 * cap, st->ne, ARR_LINK);
    GROW(d, 2 * cap, st->ne, ARR_D);
    GROW(c, cap, st->nc, ARR_CONST);
    GROW(adj, cap, st->nadj, ARR_ADJ);
    GROW(op, cap + 1, st->cap ? st->n + 1 : 0, ARR_OP); /* + the replay's end mark */
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

/* The failure of a scalar op that set the pending message, so that the
 * ops after it in an expression keep that first message (scalar.h) rather
 * than each setting its own: exp(stale) * mix of tapes says "stale". */
static _Thread_local uint64_t scalar_failure;

/* Why handle s cannot be used (a message is set), for the slow paths.  An
 * invalid handle comes from a failed call whose message says what went
 * wrong, so that message is kept, as is a scalar op's own unread one. */
COLD static void diagnose(const char *fn, ad_scalar s)
{
    uint64_t pending = ad__error_serial();
    if (pending && pending == scalar_failure) return;
    if (!s.tape) {
        if (!ad__has_error()) ad__err(fn, "invalid scalar handle (tape is NULL)");
        scalar_failure = ad__error_serial();
        return;
    }
    if (!ad__tape_alive(s.tape))
        ad__errc(AD_ERR_STALE, fn, "scalar handle belongs to a tape that was freed (ad_tape_free)");
    else
        ad__errc(AD_ERR_STALE, fn, "scalar handle is stale: it was recorded before ad_tape_reset; keep "
                    "its value (ad_scalar_value) and make a new variable to carry it "
                    "across steps");
    scalar_failure = ad__error_serial();
}

COLD static ad_scalar bad1(const char *fn, ad_scalar x)
{
    diagnose(fn, x);
    return INVALID;
}

COLD static ad_scalar bad2(const char *fn, ad_scalar x, ad_scalar y)
{
    uint64_t pending = ad__error_serial();
    if (!x.tape || !y.tape) {
        diagnose(fn, x.tape ? y : x);
    } else if (x.tape != y.tape) {
        if (!pending || pending != scalar_failure) {
            ad__err(fn, "operands belong to different tapes");
            scalar_failure = ad__error_serial();
        }
    } else {
        diagnose(fn, live(get(x.tape), x) ? y : x);
    }
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
    if (ad__check_tape("ad_scalar_reserve", tape)) return -1;
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
 * 0 * inf = NaN into its operands' adjoints.  Adding +0 leaves every
 * adjoint's bits as they are (an adjoint starts at +0 and never becomes
 * -0, since +0 + -0 = +0).
 *
 * Most often a node's adjoint is the sum the edge just before stored (a
 * chain x -> u(x) -> v(u) is swept edge after edge), and reading it back
 * from memory put a store-to-load forwarding on the chain of dependent
 * multiply-adds the sweep is.  sweep_edge keeps the last edge's operand
 * and sum in registers and reads those instead, behind a branch the CPU
 * predicts (a select would wait for the load all the same): 15 % less time
 * in the sweep at n = 1e4, 5-7 % less in a replayed gradient at 1e5 (AMD
 * EPYC, bench/rosenbrock).  On random graphs of 4e5 nodes, 11-29 % less
 * whether none, half or all of the first operands are the node before;
 * but 15 % more, up to twice as much, on graphs that are mostly dead code
 * (four nodes in five do not reach y) with operands drawn at random, where
 * the branch mispredicts (docs/benchmarks.md).  Tapes recorded by programs
 * repeat the pattern of their loops, which the predictor learns.  The
 * sums are the same, so are the bits.
 *
 * The edges' two arrays are read backwards in a stream; the hardware
 * brings them to L2, and prefetching them SWEEP_AHEAD edges ahead into L1
 * (every 8 edges, one line of each; the edges in the same order) took the
 * sweep from 1.90 to 1.50 ns per op at n = 1e5 and from 2.78 to 1.85 at
 * 1e6 on a Xeon (bench/rosenbrock; 32 to 1024 ahead measured, 256-512
 * best).  The same in the forward replay's walk, per node, was slower at
 * 1e5. */
#define SWEEP_AHEAD 256

/* One edge e with partial *dq: adj[e.arg] += adj[e.node] *dq.  *last_arg
 * and *last: the operand of the edge before and the sum it stored
 * (UINT32_MAX, no node's id, before the first edge). */
#if defined(__SSE2__)
/* The same in SSE2's registers: the compiler kept g == 0 a branch (two,
 * for the unordered case), and a select on doubles cost shuffles into and
 * out of the vector registers; the mask of a compare (all ones unless g is
 * +-0, so a NaN still propagates) and'ed with g dq has neither: 12
 * instructions an edge against 17, and 6-9 % less time in a replayed
 * gradient at n = 1e5 on an AMD EPYC, Zen 5 (bench/rosenbrock, 3 runs of
 * 7-11 interleaved pairs; 1e6 within the noise). */
typedef __m128d sweep_sum;
static inline void sweep_edge(double *restrict adj, sop_link e, const double *dq,
                              uint32_t *last_arg, sweep_sum *last)
{
    __m128d g = LIKELY(e.node == *last_arg) ? *last : _mm_load_sd(adj + e.node);
    __m128d p = _mm_and_pd(_mm_cmpneq_sd(g, _mm_setzero_pd()), _mm_mul_sd(g, _mm_load_sd(dq)));
    __m128d v = _mm_add_sd(_mm_load_sd(adj + e.arg), p);
    _mm_store_sd(adj + e.arg, v);
    *last = v;
    *last_arg = e.arg;
}
#define SWEEP_SUM_ZERO _mm_setzero_pd()
#else
typedef double sweep_sum;
static inline void sweep_edge(double *restrict adj, sop_link e, const double *dq,
                              uint32_t *last_arg, sweep_sum *last)
{
    double g = LIKELY(e.node == *last_arg) ? *last : adj[e.node];
    double v = adj[e.arg] + (g == 0.0 ? 0.0 : g * *dq);
    adj[e.arg] = v;
    *last = v;
    *last_arg = e.arg;
}
#define SWEEP_SUM_ZERO 0.0
#endif

/* On a cache line of its own start, so that code added elsewhere does not
 * move its loop across fetch blocks (as it did walk_fast's handlers,
 * scalar_replay.c). */
__attribute__((aligned(64))) static void sweep(struct ad_scalar_tape *st, uint32_t top)
{
    double *restrict adj = st->adj;
    const sop_link *restrict l = st->link;
    const double *restrict d = st->d;
    memset(adj, 0, ((size_t)top + 1) * sizeof *adj);
    adj[top] = 1.0;
    size_t k = edges_upto(st, top);
    uint32_t last_arg = UINT32_MAX;
    sweep_sum last = SWEEP_SUM_ZERO;
    for (; k >= 8 + SWEEP_AHEAD; k -= 8) {
        __builtin_prefetch(l + k - SWEEP_AHEAD, 0, 3);
        __builtin_prefetch(d + k - SWEEP_AHEAD, 0, 3);
        for (size_t q = k; q-- > k - 8;) sweep_edge(adj, l[q], d + q, &last_arg, &last);
    }
    while (k-- > 0) sweep_edge(adj, l[k], d + k, &last_arg, &last);
    st->nadj = (size_t)top + 1;
}

int ad_scalar_backward(ad_scalar y)
{
    struct ad_scalar_tape *st;
    if (check_y("ad_scalar_backward", y, &st)) return -1;
    sweep(st, y.id);
    return 0;
}

/* grad[k] = d(y)/d(xs[k]) for k < n after the sweep from y; consecutive
 * says xs's ids follow one another (handles_consecutive). */
static void gradient_out(const struct ad_scalar_tape *st, int n, const ad_scalar *xs,
                         bool consecutive, double *grad)
{
    /* The tape's fields in locals: grad might alias them for all the
     * compiler knows, and would make it load them again per store. */
    const uint8_t *op = st->op;
    const double *adj = st->adj;
    size_t nadj = st->nadj;
    if (consecutive && xs[0].id + (size_t)n <= nadj) {
        /* grad_at without its bound test (every id is below nadj), as a
         * select the compiler vectorises */
        const uint8_t *o = op + xs[0].id;
        const double *a = adj + xs[0].id;
        for (int k = 0; k < n; k++) grad[k] = o[k] == SOP_CONST ? 0.0 : a[k];
    } else if (consecutive) {
        uint32_t id0 = xs[0].id;
        for (int k = 0; k < n; k++) grad[k] = grad_at(op, adj, nadj, id0 + (uint32_t)k);
    } else {
        for (int k = 0; k < n; k++) grad[k] = grad_at(op, adj, nadj, xs[k].id);
    }
}

int ad_scalar_gradient(ad_scalar y, int n, const ad_scalar *xs, double *grad)
{
    static const char *fn = "ad_scalar_gradient";
    struct ad_scalar_tape *st;
    if (check_y(fn, y, &st)) return -1;
    if (n < 0 || (n > 0 && (!xs || !grad)))
        return ad__err(fn, "need n >= 0 and non-NULL xs and grad arrays (n = %d)", n);
    /* ids one after another: no second pass over xs */
    bool consecutive = handles_consecutive(st, y.tape, xs, n);
    for (int k = 0; k < n && !consecutive; k++) {
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
    gradient_out(st, n, xs, consecutive, grad);
    return 0;
}

int ad_scalar_replay_gradient(ad_scalar y, int n, const ad_scalar *vars, const double *values,
                              double *grad)
{
    static const char *fn = "ad_scalar_replay_gradient";
    struct ad_scalar_tape *st;
    if (check_y(fn, y, &st)) return -1;
    if (n < 0 || (n > 0 && (!vars || !values || !grad)))
        return ad__err(fn, "need n >= 0 and non-NULL vars, values and grad arrays (n = %d)", n);
    /* every argument checked before the tape changes */
    bool consecutive;
    if (ad__scalar_check_vars(fn, st, y.tape, n, vars, &consecutive)) return -1;
    int switches = ad__scalar_replay_run(st, n, vars, consecutive, values);
    sweep(st, y.id);
    gradient_out(st, n, vars, consecutive, grad);
    return switches;
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

