/* The end of one typed pass of typed.h: its macro environment undone (no include guard:
 * included after each pass). */
#undef REAL
#undef TYPED
#undef TY
#undef REAL_MAX
#undef REAL_MIN
#undef FABS
#undef SQRT
#undef COPYSIGN
#undef EXP
#undef TANH
#undef ELMAN_LAST_PASS
