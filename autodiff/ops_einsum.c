/* autodiff/ops_einsum.c - einsum as a composition of diagonal, sum,
 * permute, reshape, mul and matmul (no op of its own: every derivative is
 * those ops').
 *
 * The plan: each operand first takes the diagonal of any label it repeats
 * ("ii") and sums away the labels no other operand and not the output
 * have; then the operands are contracted left to right, two at a time: the
 * labels both share are batch dimensions when still needed (by a later
 * operand or the output) and are summed over otherwise, so each pair is
 * one batched matmul [P, L, C] x [P, C, R]; at the end the result is
 * permuted into the output's order. */
#include "internal.h"

#define MAXOPS 16

typedef struct term {
    int n;
    char lab[AD_MAX_DIMS];
    ad_tensor *t;
} term;

static bool has(const term *t, char c) { return memchr(t->lab, c, (size_t)t->n) != NULL; }

/* Removes dimension d of t's labels (the tensor is changed by the caller). */
static void drop(term *t, int d)
{
    memmove(t->lab + d, t->lab + d + 1, (size_t)(t->n - d - 1));
    t->n--;
}

/* Sums away the labels of t for which keep(label) is false. */
static int sum_unneeded(term *t, const char *keep)
{
    int axes[AD_MAX_DIMS], na = 0;
    for (int d = 0; d < t->n; d++)
        if (!strchr(keep, t->lab[d])) axes[na++] = d;
    if (na == 0) return 0;
    if (!(t->t = ad_sum(t->t, axes, na, false))) return -1;
    for (int k = na - 1; k >= 0; k--) drop(t, axes[k]);
    return 0;
}

/* Dimensions in the order `order` (labels of t, each once). */
static int permute_to(term *t, const char *order)
{
    int perm[AD_MAX_DIMS];
    bool same = true;
    for (int d = 0; d < t->n; d++) {
        perm[d] = (int)((const char *)memchr(t->lab, order[d], (size_t)t->n) - t->lab);
        same &= perm[d] == d;
    }
    if (!same && !(t->t = ad_permute(t->t, perm))) return -1;
    memcpy(t->lab, order, (size_t)t->n);
    return 0;
}

/* A repeated label "..i..i.." becomes one dimension: the diagonal. */
static int diagonals(term *t)
{
    for (int i = 0; i < t->n; i++)
        for (int j = i + 1; j < t->n; j++) {
            if (t->lab[i] != t->lab[j]) continue;
            int perm[AD_MAX_DIMS], k = 0; /* the pair moved last */
            char lab[AD_MAX_DIMS];
            for (int d = 0; d < t->n; d++)
                if (d != i && d != j) perm[k++] = d;
            perm[k++] = i, perm[k++] = j;
            for (int d = 0; d < t->n; d++) lab[d] = t->lab[perm[d]];
            if (!(t->t = ad_diagonal(ad_permute(t->t, perm), 0))) return -1;
            memcpy(t->lab, lab, (size_t)t->n - 1);
            t->n--;
            return diagonals(t);
        }
    return 0;
}

/* dst = x y z (label strings of the given lengths, not terminated). */
static void join3(char *dst, const char *x, int nx, const char *y, int ny, const char *z, int nz)
{
    memcpy(dst, x, (size_t)nx);
    memcpy(dst + nx, y, (size_t)ny);
    memcpy(dst + nx + ny, z, (size_t)nz);
}

/* a := a x b contracted over the labels they share that `keep` lacks. */
static int contract(const char *fn, term *a, term *b, const char *keep)
{
    char ka[AD_MAX_DIMS * MAXOPS + 64], kb[sizeof ka];
    /* labels only one side has and nobody needs go first */
    snprintf(ka, sizeof ka, "%s%.*s", keep, b->n, b->lab);
    snprintf(kb, sizeof kb, "%s%.*s", keep, a->n, a->lab);
    if (sum_unneeded(a, ka) || sum_unneeded(b, kb)) return -1;
    char bat[AD_MAX_DIMS], lft[AD_MAX_DIMS], con[AD_MAX_DIMS], rgt[AD_MAX_DIMS];
    int nb = 0, nl = 0, nc = 0, nr = 0;
    int64_t P = 1, L = 1, C = 1, R = 1, shape[AD_MAX_DIMS];
    for (int d = 0; d < a->n; d++) {
        char c = a->lab[d];
        int64_t e = a->t->shape[d];
        if (!has(b, c)) lft[nl++] = c, L *= e;
        else if (strchr(keep, c)) bat[nb++] = c, P *= e;
        else con[nc++] = c, C *= e;
    }
    for (int d = 0; d < b->n; d++)
        if (!has(a, b->lab[d])) rgt[nr++] = b->lab[d], R *= b->t->shape[d];
    if (nb + nl + nr > AD_MAX_DIMS)
        return ad__err(fn, "an intermediate result would have %d dimensions (at most %d)",
                       nb + nl + nr, AD_MAX_DIMS);
    char oa[AD_MAX_DIMS * 2], ob[AD_MAX_DIMS * 2], out[AD_MAX_DIMS * 2];
    join3(oa, bat, nb, lft, nl, con, nc);
    join3(ob, bat, nb, con, nc, rgt, nr);
    if (permute_to(a, oa) || permute_to(b, ob)) return -1;
    for (int d = 0; d < nb + nl; d++) shape[d] = a->t->shape[d];
    for (int d = 0; d < nr; d++) shape[nb + nl + d] = b->t->shape[nb + nc + d];
    ad_tensor *x = ad_reshape(a->t, 3, (int64_t[]){P, L, C});
    ad_tensor *y = ad_reshape(b->t, 3, (int64_t[]){P, C, R});
    if (!(a->t = ad_reshape(ad_matmul(x, y), nb + nl + nr, shape))) return -1;
    join3(out, bat, nb, lft, nl, rgt, nr);
    a->n = nb + nl + nr;
    memcpy(a->lab, out, (size_t)a->n);
    return 0;
}

/* Parses the equation into terms and the output labels (NUL-terminated);
 * checks labels against the operands. */
static int parse(const char *fn, const char *eq, int n, ad_tensor *const *ops, term *terms,
                 char *outlab)
{
    int k = 0, count[128] = {0};
    int64_t ext[128];
    const char *p = eq;
    terms[0].n = 0;
    for (; *p && !(p[0] == '-' && p[1] == '>'); p++) {
        char c = *p;
        if (c == ' ') continue;
        if (c == ',') {
            if (++k >= n) return ad__err(fn, "'%s' has more operands than the %d given", eq, n);
            terms[k].n = 0;
            continue;
        }
        if (c == '.') return ad__err(fn, "'%s': ellipsis (...) is not supported", eq);
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
            return ad__err(fn, "'%s': unexpected character '%c' (labels are letters)", eq, c);
        if (terms[k].n == AD_MAX_DIMS)
            return ad__err(fn, "'%s': operand %d has more than %d labels", eq, k, AD_MAX_DIMS);
        terms[k].lab[terms[k].n++] = c;
    }
    if (k != n - 1) return ad__err(fn, "'%s' names %d operands but %d are given", eq, k + 1, n);
    for (int i = 0; i < n; i++) {
        terms[i].t = ops[i];
        if (terms[i].n != ops[i]->ndim)
            return ad__errc(AD_ERR_SHAPE, fn, "operand %d is %s but '%.*s' has %d labels", i,
                            ad__shape_str(ops[i]), terms[i].n, terms[i].lab, terms[i].n);
        for (int d = 0; d < terms[i].n; d++) {
            int c = terms[i].lab[d];
            if (count[c]++ && ext[c] != ops[i]->shape[d])
                return ad__errc(AD_ERR_SHAPE, fn, "label '%c' has extent %lld and %lld (operand "
                                "%d is %s)", c, (long long)ext[c], (long long)ops[i]->shape[d],
                                i, ad__shape_str(ops[i]));
            ext[c] = ops[i]->shape[d];
        }
    }
    int no = 0;
    if (*p) { /* explicit output */
        for (p += 2; *p; p++) {
            if (*p == ' ') continue;
            if (*p < 0 || !count[(int)*p] || memchr(outlab, *p, (size_t)no))
                return ad__err(fn, "'%s': output label '%c' is not an input label, or repeated",
                               eq, *p);
            if (no == AD_MAX_DIMS)
                return ad__err(fn, "'%s': more than %d output labels (a tensor has at most %d "
                               "dimensions)", eq, AD_MAX_DIMS, AD_MAX_DIMS);
            outlab[no++] = *p;
        }
    } else /* implicit: the labels seen once, alphabetically */
        for (int c = 'A'; c <= 'z'; c++) {
            if (count[c] != 1) continue;
            if (no == AD_MAX_DIMS)
                return ad__err(fn, "'%s': more than %d labels appear once, so the implicit "
                               "output would have more than %d dimensions", eq, AD_MAX_DIMS,
                               AD_MAX_DIMS);
            outlab[no++] = (char)c;
        }
    outlab[no] = '\0';
    return 0;
}

ad_tensor *ad_einsum(const char *equation, int n, ad_tensor *const *operands)
{
    static const char *fn = "ad_einsum";
    if (!equation) return ad__err(fn, "equation is NULL"), NULL;
    if (n < 1 || n > MAXOPS)
        return ad__err(fn, "need 1 to %d operands, got %d", MAXOPS, n), NULL;
    if (!operands) return ad__err(fn, "operands is NULL"), NULL;
    for (int i = 0; i < n; i++) {
        char name[24];
        snprintf(name, sizeof name, "operands[%d]", i);
        if (ad__check_arg(fn, name, operands[i], true) ||
            (i > 0 && ad__check_same_dtype(fn, operands[0], operands[i])))
            return NULL;
    }
    term terms[MAXOPS];
    char outlab[AD_MAX_DIMS + 1];
    if (parse(fn, equation, n, operands, terms, outlab)) return NULL;
    ad_scope s;
    if (ad_scope_begin(&s, fn, n, operands, false)) return NULL;
    int rc = 0;
    /* each operand alone: diagonals, then labels used nowhere else */
    for (int i = 0; i < n && !rc; i++) {
        char keep[AD_MAX_DIMS * MAXOPS + 1];
        int k = snprintf(keep, sizeof keep, "%s", outlab);
        for (int j = 0; j < n; j++)
            if (j != i)
                k += snprintf(keep + k, sizeof keep - (size_t)k, "%.*s", terms[j].n, terms[j].lab);
        rc = diagonals(&terms[i]) || sum_unneeded(&terms[i], keep);
    }
    for (int i = 1; i < n && !rc; i++) {
        char keep[AD_MAX_DIMS * MAXOPS + 1];
        int k = snprintf(keep, sizeof keep, "%s", outlab);
        for (int j = i + 1; j < n; j++)
            k += snprintf(keep + k, sizeof keep - (size_t)k, "%.*s", terms[j].n, terms[j].lab);
        rc = contract(fn, &terms[0], &terms[i], keep);
    }
    if (!rc) rc = sum_unneeded(&terms[0], outlab) || permute_to(&terms[0], outlab);
    ad_tensor *r = rc ? NULL : terms[0].t;
    /* a lone operand may come through untouched: the result is a new tensor */
    if (r == operands[0]) r = ad_contiguous(r);
    return ad_scope_end(&s, r);
}
