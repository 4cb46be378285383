/* autodiff/ffi.h - foreign C functions on the tape, and tapes as C callbacks.
 *
 * Two bridges between the engine and C code it did not write, both through
 * libffi (docs/ffi.md has the full story and examples):
 *
 *   foreign ops   a plain C function double f(double, double, ...) (or
 *                 double f(const double *x, int n)) becomes an op usable on
 *                 the tape like any other, with the derivatives you supply
 *                 or, failing that, numeric ones;
 *   callbacks     a function you write with the library's ops becomes a
 *                 real C function pointer, double f(const double *x, void
 *                 *params), and another that fills its gradient, to hand to
 *                 any optimiser or integrator that expects them.
 *
 * (The third use, checking someone else's derivatives, is the adcheck tool:
 * see docs/ffi.md.)
 */
#ifndef AUTODIFF_FFI_H
#define AUTODIFF_FFI_H

#include "export.h"
#include "scalar.h"
#include "transforms.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- foreign ops -------------------------------------------------------------
 *
 * Signatures.  Either a short string, one letter per type, or a C prototype
 * (parameter names and the function's own name are allowed and ignored,
 * except that the name becomes the op's name when you give none):
 *
 *     "d(ddd)"   "double (double, double, double)"     scalar form
 *     "f(fi)"    "float g(float x, int k);"
 *     "d(Di)"    "double norm(const double *x, int n)"  vector form
 *
 * Letters: d double, f float, i int, l long; D const double *, F const
 * float *; z size_t (a vector length only).  Spaces and commas between
 * letters are allowed.
 *
 *   Scalar form, R f(T1, ..., Tm), 1 <= m <= 16, each of R and Ti double,
 *   float, int or long: ad_foreign_call applies f elementwise to m tensors
 *   broadcast together (numpy's rules).  A double argument takes a float64
 *   tensor, float a float32 one, int and long an int64 one (not
 *   differentiated; a value that does not fit in int is an error).  The
 *   result has the broadcast shape and R's dtype (int64 for int and long,
 *   and then it is not differentiable).
 *
 *   Vector form, T f(const T *x, int n) with T double or float (the length
 *   may be long or size_t): ad_foreign_call applies f to each row of the
 *   last dimension of one tensor of T's dtype: x of shape [..., n] gives a
 *   result of shape [...].  The rows are copied to a contiguous buffer, so
 *   x may be any view and f never sees the tensor's memory.
 *
 * Derivatives, from best to worst:
 *   partial_ops[i]  dF/dx_i given as another foreign op (same signature)
 *                   which has derivatives of its own: then second
 *                   derivatives are exact too.  Scalar form only.
 *   partials[i]     a C function with f's own prototype returning dF/dx_i.
 *                   Scalar form only.
 *   grad            scalar form: void g(T1 x1, ..., Tm xm, R *out) storing
 *                   dF/dx_i into out[i] for every i (entries of integer
 *                   arguments are ignored); vector form:
 *                   void g(const T *x, int n, T *out) storing dF/dx_k into
 *                   out[k] for k < n.
 *   nothing         numeric derivatives: central differences refined by one
 *                   Richardson step (the fourth-order five-point stencil),
 *                   step h = 2e-4 max(1, ln(1 + |x_i|)) for double, 1e-2
 *                   times the same for float: relative error about 1e-12
 *                   (double) and 3e-6 (float) for a smooth f whose
 *                   derivatives are of the order of f itself; worse near a
 *                   singularity (log at 0.1: 3e-11) and wrong across a
 *                   kink or jump.  The op's name then says so:
 *                   "foreign:myfunc (numeric derivative)".
 * An argument's entry may mix these (partials for some arguments, numeric
 * for the others); grad and partials are exclusive.
 *
 * Higher derivatives.  The backward rule computes dF/dx_i with another
 * recorded foreign op (the partial, or a numeric difference of f or of the
 * partial), so with AD_CREATE_GRAPH the gradient is differentiable again:
 * any order up to AD_FOREIGN_MAX_ORDER.  Each order that is not given
 * analytically is one more level of differences, with a larger step since
 * what it differentiates carries the error of the level below: for smooth
 * double functions second derivatives come out to about 1e-9 relative
 * (good enough for ad_gradgradcheck), third to 1e-6, fourth to 1e-5; in
 * float, second derivatives to 1e-4.  Each numeric level multiplies the
 * calls per element by 4 (per row by 4n in the vector form, whose k-th
 * derivative is a [..., n^k] tensor of all k-th partials, row-major).
 *
 * Names.  The value op is named "foreign:NAME" (plus " (numeric
 * derivative)" when some first derivative is numeric); the derivative ops
 * the backward pass records are "foreign:NAME partial (numeric
 * derivative)" (your partial or gradient function, differentiated
 * numerically) and "foreign:NAME numeric partial (numeric derivative)".
 * Graphs (ad_tape_node_info), traces and anomaly errors show these names.
 *
 * Ownership.  ad_foreign_new* return an object the caller frees with
 * ad_foreign_free, after every tape that recorded a call to it has been
 * reset or freed (the recorded nodes point into it).  The signature and
 * name strings are copied; partial_ops are borrowed and must outlive the
 * op.  The object is immutable: one op may be called from several threads
 * at once (libffi's call interface is read-only), as long as the C
 * functions themselves are thread-safe.
 *
 * Errors.  ad_foreign_new* return NULL with ad_error() saying why:
 *   ad_foreign_new: expected ',' or ')' at column 16 in "double (double double)"
 *   ad_foreign_new: "void (double)" returns void; a function to differentiate
 *                   returns double, float or int
 *   ad_foreign_new_desc: partials[1] given for argument 1, an int
 * ad_foreign_call returns NULL for a wrong count, dtype or shape:
 *   ad_foreign_call: foreign:f: expected 3 arguments, got 2
 *   ad_foreign_call: foreign:f: argument 1 is float32, the signature says double
 *   ad_foreign_call: foreign:norm: argument 0 must have at least 1 dimension
 *                    (the vector form reads its last dimension)
 */

/* Any C function, cast with AD_FN(f); it is called back with the prototype
 * the signature gives, never through this type. */
typedef void (*ad_fn_ptr)(void);
#define AD_FN(f) ((ad_fn_ptr)(f))

#define AD_FOREIGN_MAX_ARGS 16
#define AD_FOREIGN_MAX_ORDER 8

/* C types of a descriptor's signature (the same as the letters above). */
typedef enum ad_ctype {
    AD_C_VOID = 0,
    AD_C_DOUBLE,     /* d */
    AD_C_FLOAT,      /* f */
    AD_C_INT,        /* i */
    AD_C_LONG,       /* l */
    AD_C_SIZE_T,     /* z */
    AD_C_DOUBLE_PTR, /* D: const double * */
    AD_C_FLOAT_PTR   /* F: const float * */
} ad_ctype;

typedef struct ad_foreign ad_foreign;

/* Everything about a foreign function.  Zero-initialise it and fill what
 * you have: designated initialisers read well,
 *     ad_foreign_new_desc(&(ad_foreign_desc){.signature = "d(dd)",
 *         .fn = AD_FN(hypot), .partials = {AD_FN(dhx), AD_FN(dhy)}}); */
typedef struct ad_foreign_desc {
    const char *name;      /* "myfunc"; NULL: the prototype's name, else "f" */
    const char *signature; /* as above; NULL: ret, nargs and args say it */
    ad_ctype ret;
    int nargs;
    ad_ctype args[AD_FOREIGN_MAX_ARGS];
    ad_fn_ptr fn; /* required */
    ad_fn_ptr partials[AD_FOREIGN_MAX_ARGS];
    ad_fn_ptr grad;
    const ad_foreign *partial_ops[AD_FOREIGN_MAX_ARGS];
} ad_foreign_desc;

/* f with numeric derivatives; name may be NULL. */
AD_API ad_foreign *ad_foreign_new(const char *signature, ad_fn_ptr fn, const char *name);
AD_API ad_foreign *ad_foreign_new_desc(const ad_foreign_desc *desc);
/* NULL is ignored. */
AD_API void ad_foreign_free(ad_foreign *f);

/* "foreign:myfunc (numeric derivative)", owned by f. */
AD_API const char *ad_foreign_name(const ad_foreign *f);
/* Number of tensors ad_foreign_call takes (m, or 1 for the vector form);
 * -1 for NULL. */
AD_API int ad_foreign_nargs(const ad_foreign *f);

/* Applies f (see the forms above) and records the call when an argument
 * requires grad.  The result is owned as any op's (tape.h). */
AD_API ad_tensor *ad_foreign_call(const ad_foreign *f, int n, ad_tensor *const *args);

/* ---- signatures ------------------------------------------------------------------
 *
 * The prototype parser behind ad_foreign_new, for programs that read
 * prototypes themselves (tools/adcheck checks a library's derivatives from
 * one given on its command line).  It is pure: it reads a string and fills
 * a struct, with no global state and no allocation, so any thread may call
 * it and it can be fuzzed on its own (autodiff/ffi_sig.c compiles alone). */

/* The longest parameter list either grammar accepts. */
#define AD_FFI_MAX_ARGS AD_FOREIGN_MAX_ARGS

typedef enum ad_ffi_form {
    AD_FFI_SCALAR = 1, /* R f(T1, ..., Tm): R, Ti in double, float, int, long */
    AD_FFI_VECTOR = 2  /* T f(const T *, int): T double or float; the length
                          may also be long or size_t */
} ad_ffi_form;

typedef struct ad_ffi_sig {
    char name[64]; /* the function's name when the prototype gives one, else "" */
    ad_ctype ret;
    int nargs;
    ad_ctype args[AD_FFI_MAX_ARGS];
    ad_ffi_form form; /* set by ad_ffi_classify */
} ad_ffi_sig;

/* Parses either grammar (above and docs/ffi.md):
 *   short:  "d(ddd)", "f(ff)", "d(Di)"     one letter per type
 *   C:      "double (double, double, double)", "double f(const double *x, int n);"
 * into *out.  Returns 0, or -1 with a message in err (at most errlen bytes,
 * always terminated when errlen > 0) naming the column and quoting the
 * source:
 *   expected ',' or ')' at column 16 in "double (double double)"
 * The caller prefixes its own name; ad_error() is not set.  Only syntax and
 * the supported types are checked here; ad_ffi_classify says whether the
 * function can be differentiated. */
AD_API int ad_ffi_parse(const char *src, ad_ffi_sig *out, char *err, size_t errlen);

/* Decides sig->form, or returns -1 with a message in err when the signature
 * is neither a scalar nor a vector function ("a vector function is
 * T (const T *, int) ..."). */
AD_API int ad_ffi_classify(ad_ffi_sig *sig, char *err, size_t errlen);

/* The C spelling of a type ("const double *") and of a whole signature
 * ("double (double, double)", always terminated when size > 0), for
 * messages. */
AD_API const char *ad_ffi_type_name(ad_ctype t);
AD_API void ad_ffi_format(const ad_ffi_sig *sig, char *buf, size_t size);

/* ---- tapes as native callbacks ---------------------------------------------------
 *
 * A function of n doubles written with this library becomes C function
 * pointers with the common callback signatures:
 *
 *     double f(const double *x, void *params);             value
 *     void df(const double *x, void *params, double *g);   gradient g[n]
 *     double fdf(const double *x, void *params, double *g); both at once
 *
 * They are libffi closures: real code addresses that any C library can
 * call without knowing this engine exists.  `params` is whatever the
 * caller passes; it reaches your builder as its ctx.
 *
 * The builder is either an ad_func (transforms.h), which receives the n
 * inputs as n 0-d float64 tensors (or, with AD_CALLBACK_VECTOR, as one [n]
 * tensor) and returns a one-element floating tensor, or an ad_scalar_func
 * built with the scalar API (scalar.h), cheaper for small scalar code.
 *
 * Each call re-records the function on an internal tape reset per call, so
 * after the first call no memory is allocated (the tape keeps its arena).
 * With AD_CALLBACK_REPLAY the first call records the function once on a
 * replayable tape and freezes it; later calls only write x in and replay
 * (tape.h), which is faster but repeats the first call's C-level control
 * flow and sees params only during that first call.
 *
 * If the builder fails, the value is NaN, the gradient is filled with NaN,
 * and ad_error() (of the calling thread) says why.
 *
 * Ownership and threads: ad_callback_free releases the closures (the
 * function pointers become invalid) and the tape.  One callback object
 * must be called by one thread at a time (it owns one tape); it leaves the
 * caller's active tape and grad mode as they were.
 */
typedef double (*ad_value_callback)(const double *x, void *params);
typedef void (*ad_gradient_callback)(const double *x, void *params, double *g);
typedef double (*ad_value_gradient_callback)(const double *x, void *params, double *g);

/* A scalar-API builder: returns f(x) recorded on x's tape. */
typedef ad_scalar (*ad_scalar_func)(const ad_scalar *x, int n, void *params);

enum {
    AD_CALLBACK_REPLAY = 1u << 0, /* record once, then replay the frozen tape */
    AD_CALLBACK_VECTOR = 1u << 1  /* the ad_func gets one [n] tensor */
};

typedef struct ad_callback ad_callback;

/* n in 1..1000000.  Errors: NULL f, n out of range, unknown flags, libffi
 * failing to make a closure, out of memory. */
AD_API ad_callback *ad_callback_new(ad_func f, int n, unsigned flags);
/* flags: 0 (the scalar API always re-records; it is that cheap). */
AD_API ad_callback *ad_callback_new_scalar(ad_scalar_func f, int n, unsigned flags);
AD_API void ad_callback_free(ad_callback *cb);

AD_API ad_value_callback ad_callback_value(const ad_callback *cb);
AD_API ad_gradient_callback ad_callback_gradient(const ad_callback *cb);
AD_API ad_value_gradient_callback ad_callback_value_gradient(const ad_callback *cb);
/* Number of inputs n; -1 for NULL. */
AD_API int ad_callback_nargs(const ad_callback *cb);

#ifdef __cplusplus
}
#endif
#endif
