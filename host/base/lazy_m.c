/*
 * libm, loaded on first use (lazy_lib.h): the math functions SQLite's SQL functions (sin,
 * pow, …) and the host's retry policy (pow, llround) call, each forwarding to libm.so.6.
 * Linked, libm was mapped and relocated at every start of every command (its ifunc
 * resolvers included), though a create or a listing calls none of them: 21,000 instructions,
 * 10 page faults and 9 system calls of each `ferry create queue-item`.
 *
 * When libm cannot be loaded (it is glibc's own, so only in a broken system) each wrapper
 * returns NaN, or 0 for llround.
 */
#include <math.h>

#include "lazy_lib.h"

LAZY_LIB(lazy_m_lib, "libm.so.6", "libc6", NULL)

#define M1(name) LAZY_FN(lazy_m_lib, double, NAN, name, (double x), (x))
#define M2(name) LAZY_FN(lazy_m_lib, double, NAN, name, (double x, double y), (x, y))

M1(acos)
M1(acosh)
M1(asin)
M1(asinh)
M1(atan)
M1(atanh)
M1(cos)
M1(cosh)
M1(exp)
M1(log)
M1(sin)
M1(sinh)
M1(sqrt)
M1(tan)
M1(tanh)
M1(trunc)
M2(atan2)
M2(fmod)
M2(pow)
LAZY_FN(lazy_m_lib, long long, 0, llround, (double x), (x))
