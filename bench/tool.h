/* What the bench tools tcp_discard and tcp_replay share. Plain C and POSIX: nothing of
 * streamgate, so the ceilings they measure owe nothing to it. */
#ifndef BENCH_TOOL_H
#define BENCH_TOOL_H

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/* Seconds on the monotonic clock. */
static inline double tool_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Reports a failed call as "PROG: WHAT: <errno's message>"; returns 1, the exit status. */
static inline int tool_fail(const char *prog, const char *what)
{
    fprintf(stderr, "%s: %s: %s\n", prog, what, strerror(errno));
    return 1;
}

/* The process's own CPU time, user and system, in seconds; *peak_rss_kb its peak RSS. */
static inline double tool_cpu_s(long *peak_rss_kb)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    if (peak_rss_kb)
        *peak_rss_kb = ru.ru_maxrss;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

#endif
