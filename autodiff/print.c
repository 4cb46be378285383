/* autodiff/print.c - ad_print: tensors as text, in PyTorch's layout.
 *
 *   tensor([[ 1.0000, -2.0000],
 *           [ 3.0000,  4.0000]], dtype=float64, requires_grad=True)
 *
 * One format is chosen for the whole tensor so that columns line up: every
 * element is right-aligned to the width of the widest.  Floats get four
 * decimals, or scientific notation when fixed point would lose them: when the
 * largest magnitude needs more than eight integer digits or the smallest
 * non-zero one would print as 0.0000.  Past 1000 elements the tensor is
 * summarised, numpy-style, by its first and last three entries along every
 * dimension; the format is then chosen from the entries shown.
 *
 * The text is built in memory and written with one fwrite, so an output
 * error is reported once and a failed allocation prints nothing.
 */
#include <inttypes.h>

#include "internal.h"
#include "strbuf.h"

#define SUMMARY_THRESHOLD 1000 /* numel above which we summarise */
#define EDGE 3                 /* entries kept at each end when summarising */
#define LINE_WIDTH 80          /* 1-D rows wrap to stay within this */
#define PREFIX "tensor("

/* ---- text: strbuf.h, and runs of one character ---------------------------- */

static void sb_spaces(ad__strbuf *b, int n)
{
    for (int i = 0; i < n; i++) ad__sb_put(b, " ", 1);
}

static void sb_newlines(ad__strbuf *b, int n)
{
    for (int i = 0; i < n; i++) ad__sb_put(b, "\n", 1);
}

/* ---- element formatting ---------------------------------------------------- */

typedef enum { FMT_INT, FMT_FIXED, FMT_SCI } fmt_kind;

typedef struct {
    fmt_kind kind;
    int width; /* of the widest element shown */
} fmt_spec;

/* Formats the element at storage index off into buf, returns its length. */
static int fmt_elem(const fmt_spec *f, const ad_tensor *t, int64_t off, char *buf, size_t n)
{
    if (f->kind == FMT_INT)
        return snprintf(buf, n, "%" PRId64, ((const int64_t *)t->storage->data)[off]);
    double x = ad__ld(t, off);
    if (isnan(x)) return snprintf(buf, n, "nan");
    if (isinf(x)) return snprintf(buf, n, x > 0 ? "inf" : "-inf");
    return snprintf(buf, n, f->kind == FMT_SCI ? "%.4e" : "%.4f", x);
}

/* Visits the storage index of every element that will be shown, in order:
 * along each dimension all of them, or when summarising the first and last
 * EDGE (only where there are more than 2 * EDGE, as numpy does). */
typedef void (*elem_fn)(const ad_tensor *t, int64_t off, void *ctx);

static void walk(const ad_tensor *t, int d, int64_t off, bool summ, elem_fn fn, void *ctx)
{
    if (d == t->ndim) {
        fn(t, off, ctx);
        return;
    }
    int64_t n = t->shape[d];
    for (int64_t i = 0; i < n; i++) {
        if (summ && n > 2 * EDGE && i == EDGE) i = n - EDGE;
        walk(t, d + 1, off + i * t->strides[d], summ, fn, ctx);
    }
}

typedef struct {
    double max_abs, min_nonzero;
    bool any_finite;
} range_ctx;

static void range_elem(const ad_tensor *t, int64_t off, void *vctx)
{
    range_ctx *c = vctx;
    double a = fabs(ad__ld(t, off));
    if (!isfinite(a)) return; /* nan and inf print as words in any format */
    if (!c->any_finite || a > c->max_abs) c->max_abs = a;
    if (a != 0 && (c->min_nonzero == 0 || a < c->min_nonzero)) c->min_nonzero = a;
    c->any_finite = true;
}

typedef struct {
    fmt_spec *f;
} width_ctx;

static void width_elem(const ad_tensor *t, int64_t off, void *vctx)
{
    width_ctx *c = vctx;
    char buf[64];
    int n = fmt_elem(c->f, t, off, buf, sizeof buf);
    if (n > c->f->width) c->f->width = n;
}

static fmt_spec choose_format(const ad_tensor *t, bool summ)
{
    fmt_spec f = {FMT_INT, 1};
    if (ad__is_float(t->dtype)) {
        range_ctx r = {0, 0, false};
        walk(t, 0, t->offset, summ, range_elem, &r);
        /* 1e8 has nine integer digits; below 1e-4 four decimals show 0. */
        bool sci = r.any_finite && (r.max_abs >= 1e8 || (r.min_nonzero != 0 && r.min_nonzero < 1e-4));
        f.kind = sci ? FMT_SCI : FMT_FIXED;
    }
    width_ctx w = {&f};
    walk(t, 0, t->offset, summ, width_elem, &w);
    return f;
}

static void put_elem(ad__strbuf *b, const fmt_spec *f, const ad_tensor *t, int64_t off)
{
    char buf[64];
    int n = fmt_elem(f, t, off, buf, sizeof buf);
    sb_spaces(b, f->width - n);
    ad__sb_put(b, buf, (size_t)n);
}

/* ---- layout ------------------------------------------------------------------
 * Nested brackets, one row per line for the innermost dimension; blocks of
 * higher dimensions are separated by (remaining dims - 1) newlines, so 3-D
 * tensors show a blank line between matrices.  `indent` is the column of the
 * opening bracket of this level. */

static void put_row(ad__strbuf *b, const ad_tensor *t, int64_t off, bool summ, const fmt_spec *f,
                    int indent)
{
    int d = t->ndim - 1;
    int64_t n = t->shape[d];
    int per_line = (LINE_WIDTH - indent) / (f->width + 2);
    if (per_line < 1) per_line = 1;
    int on_line = 0;
    ad__sb_str(b, "[");
    for (int64_t i = 0; i < n; i++) {
        bool skip = summ && n > 2 * EDGE && i == EDGE;
        if (i > 0) {
            ad__sb_str(b, ",");
            if (on_line == per_line) {
                sb_newlines(b, 1);
                sb_spaces(b, indent + 1);
                on_line = 0;
            } else {
                ad__sb_str(b, " ");
            }
        }
        if (skip) {
            ad__sb_str(b, " ...");
            i = n - EDGE - 1;
        } else {
            put_elem(b, f, t, off + i * t->strides[d]);
        }
        on_line++;
    }
    ad__sb_str(b, "]");
}

static void put_block(ad__strbuf *b, const ad_tensor *t, int d, int64_t off, bool summ,
                      const fmt_spec *f, int indent)
{
    if (d == t->ndim - 1) {
        put_row(b, t, off, summ, f, indent);
        return;
    }
    int64_t n = t->shape[d];
    ad__sb_str(b, "[");
    for (int64_t i = 0; i < n; i++) {
        if (i > 0) {
            ad__sb_str(b, ",");
            sb_newlines(b, t->ndim - d - 1);
            sb_spaces(b, indent + 1);
        }
        if (summ && n > 2 * EDGE && i == EDGE) {
            ad__sb_str(b, "...");
            i = n - EDGE - 1;
            continue;
        }
        put_block(b, t, d + 1, off + i * t->strides[d], summ, f, indent + 1);
    }
    ad__sb_str(b, "]");
}

int ad_print(const ad_tensor *t, FILE *out)
{
    if (ad__check_arg("ad_print", "t", t, false)) return -1;
    if (!out) return ad__err("ad_print", "out is NULL");

    ad__strbuf b = {0};
    int64_t numel = ad__numel(t->ndim, t->shape);
    ad__sb_str(&b, PREFIX);
    if (numel == 0) {
        /* Nothing to show but the shape, which "[]" alone would hide. */
        ad__sb_str(&b, "[]");
        if (t->ndim != 1) {
            char buf[32];
            ad__sb_str(&b, ", size=(");
            for (int d = 0; d < t->ndim; d++) {
                snprintf(buf, sizeof buf, d ? ", %" PRId64 : "%" PRId64, t->shape[d]);
                ad__sb_str(&b, buf);
            }
            ad__sb_str(&b, ")");
        }
    } else {
        bool summ = numel > SUMMARY_THRESHOLD;
        fmt_spec f = choose_format(t, summ);
        if (t->ndim == 0) put_elem(&b, &f, t, t->offset);
        else put_block(&b, t, 0, t->offset, summ, &f, (int)strlen(PREFIX));
    }
    ad__sb_str(&b, ", dtype=");
    ad__sb_str(&b, ad_dtype_name(t->dtype));
    /* As PyTorch: a recorded result names the op that made it; a leaf says
     * only that it requires grad. */
    if (t->node) {
        ad__sb_str(&b, ", grad_fn=<");
        ad__sb_str(&b, t->node->op->name);
        ad__sb_str(&b, ">");
    } else if (t->requires_grad) {
        ad__sb_str(&b, ", requires_grad=True");
    }
    ad__sb_str(&b, ")\n");

    int rc = 0;
    if (b.oom) rc = ad__err("ad_print", "out of memory formatting a tensor of %" PRId64
                                        " elements", numel);
    else if (fwrite(b.s, 1, b.len, out) != b.len || fflush(out) != 0)
        rc = ad__err("ad_print", "write failed");
    ad__free(b.s);
    return rc;
}
