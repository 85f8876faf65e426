/* tcp_discard: the TCP ceiling for bench/run. Listens on 127.0.0.1 (a free port, printed on
 * stdout), accepts one connection, reads it into a 64 KiB buffer until EOF counting bytes and
 * '\n', then prints one JSON line and exits: bytes, lines, seconds (from accept to EOF), and its
 * own CPU seconds and peak RSS (getrusage), since it is gone before anyone can read /proc.
 * Plain C and POSIX only: nothing of streamgate. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(const char *what)
{
    fprintf(stderr, "tcp_discard: %s: %s\n", what, strerror(errno));
    return 1;
}

int main(void)
{
    static unsigned char buf[64 * 1024];
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    if (ls < 0)
        return fail("socket");
    if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(ls, 1) != 0 ||
        getsockname(ls, (struct sockaddr *)&sa, &sl) != 0)
        return fail("listen");
    printf("%u\n", ntohs(sa.sin_port));
    fflush(stdout);

    int c;
    while ((c = accept(ls, NULL, NULL)) < 0)
        if (errno != EINTR)
            return fail("accept");
    close(ls);
    double t0 = now_s();
    uint64_t bytes = 0, lines = 0;
    for (;;) {
        ssize_t n = read(c, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return fail("read");
        if (n == 0)
            break;
        bytes += (uint64_t)n;
        for (ssize_t i = 0; i < n; i++)
            lines += buf[i] == '\n';
    }
    double secs = now_s() - t0;
    close(c);

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                 (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    printf("{\"bytes\":%llu,\"lines\":%llu,\"seconds\":%.6f,\"cpu_seconds\":%.3f,"
           "\"peak_rss_kb\":%ld}\n",
           (unsigned long long)bytes, (unsigned long long)lines, secs, cpu, ru.ru_maxrss);
    return 0;
}
