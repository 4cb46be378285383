/* autodiff/autodiff.h - the one header to include.
 *
 *   alloc.h    the library's allocator, and ad_set_allocator to install yours
 *   tensor.h   dtypes, creation, views, element access, printing, errors
 *   tape.h     the tape, grad mode, leaves, ad_backward
 *   ops.h      every differentiable op and the op table
 *   scalar.h   the fast scalar API (micrograd / ADOL-C style)
 *   transforms.h grad, vjp, jvp, jacobian, hessian, hvp of C callbacks
 *   gradcheck.h ad_gradcheck and ad_gradgradcheck
 *   graph.h    Graphviz DOT pictures of what a tape recorded
 *   ffi.h      foreign C functions as ops, tapes as C callbacks (libffi)
 *   custom.h   your own ops: a forward and a backward written in C
 */
#ifndef AUTODIFF_AUTODIFF_H
#define AUTODIFF_AUTODIFF_H

#define AUTODIFF_VERSION_MAJOR 0
#define AUTODIFF_VERSION_MINOR 1
#define AUTODIFF_VERSION_PATCH 0
#define AUTODIFF_VERSION "0.1.0"

#include "alloc.h"
#include "custom.h"
#include "ffi.h"
#include "gradcheck.h"
#include "graph.h"
#include "ops.h"
#include "scalar.h"
#include "tape.h"
#include "tensor.h"
#include "transforms.h"

#endif
