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

#include "tool.h"

int main(void)
{
    static unsigned char buf[64 * 1024];
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    if (ls < 0)
        return tool_fail("tcp_discard", "socket");
    if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(ls, 1) != 0 ||
        getsockname(ls, (struct sockaddr *)&sa, &sl) != 0)
        return tool_fail("tcp_discard", "listen");
    printf("%u\n", ntohs(sa.sin_port));
    fflush(stdout);

    int c;
    while ((c = accept(ls, NULL, NULL)) < 0)
        if (errno != EINTR)
            return tool_fail("tcp_discard", "accept");
    close(ls);
    double t0 = tool_now_s();
    uint64_t bytes = 0, lines = 0;
    for (;;) {
        ssize_t n = read(c, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return tool_fail("tcp_discard", "read");
        if (n == 0)
            break;
        bytes += (uint64_t)n;
        for (ssize_t i = 0; i < n; i++)
            lines += buf[i] == '\n';
    }
    double secs = tool_now_s() - t0;
    close(c);

    long peak_rss_kb;
    double cpu = tool_cpu_s(&peak_rss_kb);
    printf("{\"bytes\":%llu,\"lines\":%llu,\"seconds\":%.6f,\"cpu_seconds\":%.3f,"
           "\"peak_rss_kb\":%ld}\n",
           (unsigned long long)bytes, (unsigned long long)lines, secs, cpu, peak_rss_kb);
    return 0;
}
