/* Round-trip time histogram of the load clients (loadgen.c, loadgen_tls.c).
 *
 * Log-linear buckets of nanoseconds: values below 32 have a bucket each, and
 * every power of two above is split into 32 equal buckets, so a bucket is at
 * most 1/32 (3%) of its values wide.  Recording a time is an index and an
 * increment; client.py (hist_lower, hist_percentiles) turns the counts back
 * into times and must agree with lg_hist_bucket. */

#ifndef LG_HIST_H
#define LG_HIST_H

#include <stdint.h>
#include <time.h>

#define LG_HIST_SUB_BITS 5
#define LG_HIST_BUCKETS 1472   /* up to 2^49 ns, about 6.5 days */

static inline int lg_hist_bucket(int64_t ns) {
    if (ns < (1 << LG_HIST_SUB_BITS))
        return ns < 0 ? 0 : (int)ns;
    int e = 63 - __builtin_clzll((unsigned long long)ns);   /* e >= SUB_BITS */
    int idx = ((e - LG_HIST_SUB_BITS + 1) << LG_HIST_SUB_BITS)
              + (int)((ns >> (e - LG_HIST_SUB_BITS)) & ((1 << LG_HIST_SUB_BITS) - 1));
    return idx < LG_HIST_BUCKETS ? idx : LG_HIST_BUCKETS - 1;
}

static inline int64_t lg_hist_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* One round trip that started at *t0 and ended now; the next one starts now. */
/* *t0 is updated without a histogram too: a request sent in the warm-up and
 * answered in the timed part is then timed from its send, not from the
 * warm-up's start. */
static inline void lg_hist_record(long long* hist, int64_t* t0) {
    int64_t now = lg_hist_now_ns();
    if (hist)
        hist[lg_hist_bucket(now - *t0)]++;
    *t0 = now;
}

#endif
