/* autodiff/scalar.c - the scalar API (scalar.h). */
#include "internal.h"

void ad__scalar_reset(ad_tape *tape) { (void)tape; }
void ad__scalar_free(ad_tape *tape) { (void)tape; }
