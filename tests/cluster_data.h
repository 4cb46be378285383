/* tests/cluster_data.h - the trainer tests' data: n points in the plane
 * in three classes around (cos, sin) of 0, 120 and 240 degrees, with a
 * little seeded noise (point i in class i % 3), as float32 x [n, 2] and
 * int64 labels [n], both persistent (the caller frees them). */
#ifndef TESTS_CLUSTER_DATA_H
#define TESTS_CLUSTER_DATA_H

#include <math.h>
#include <stdlib.h>

#include <autodiff/autodiff.h>

#include "check_asserts.h"

static inline void cluster_data(int n, ad_tensor **x, ad_tensor **y)
{
    ad_rng rng;
    ad_rng_init(&rng, 7);
    float *xv = malloc(sizeof *xv * 2 * (size_t)n);
    int64_t *yv = malloc(sizeof *yv * (size_t)n);
    ck_assert(xv && yv);
    for (int i = 0; i < n; i++) {
        yv[i] = i % 3;
        double a = 2.0943951 * (double)yv[i];
        xv[2 * i] = (float)(cos(a) + 0.3 * (ad_rng_uniform(&rng) - 0.5));
        xv[2 * i + 1] = (float)(sin(a) + 0.3 * (ad_rng_uniform(&rng) - 0.5));
    }
    *x = ad_from_array(NULL, AD_FLOAT32, 2, (int64_t[]){n, 2}, xv);
    *y = ad_from_array(NULL, AD_INT64, 1, (int64_t[]){n}, yv);
    free(xv);
    free(yv);
    ck_assert(*x && *y);
}

#endif
