/* tcp_replay: the TCP client of bench/run's TCP loads. Sends a file (NDJSON the generator wrote
 * beforehand) over one connection as fast as the kernel takes it, with sendfile(2), so the
 * client costs next to nothing and the figures are the server's. Then shuts the connection
 * down, waits for the server to close it and prints one JSON line: bytes, seconds (connect to
 * the last byte accepted by the kernel) and its own CPU seconds. Plain C and POSIX only.
 *
 *   tcp_replay FILE HOST:PORT */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tool.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: tcp_replay FILE HOST:PORT\n");
        return 2;
    }
    char host[64];
    const char *colon = strrchr(argv[2], ':');
    if (!colon || (size_t)(colon - argv[2]) >= sizeof(host)) {
        fprintf(stderr, "tcp_replay: %s: not HOST:PORT\n", argv[2]);
        return 2;
    }
    memcpy(host, argv[2], (size_t)(colon - argv[2]));
    host[colon - argv[2]] = '\0';
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "tcp_replay: %s: not an IPv4 address\n", host);
        return 2;
    }

    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        return tool_fail("tcp_replay", argv[1]);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0)
        return tool_fail("tcp_replay", "socket");
    double t0 = tool_now_s();
    if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        return tool_fail("tcp_replay", "connect");
    off_t off = 0;
    while (off < st.st_size) {
        ssize_t n = sendfile(s, fd, &off, (size_t)(st.st_size - off));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return tool_fail("tcp_replay", "sendfile");
    }
    double secs = tool_now_s() - t0;
    /* The server sends nothing; its end of stream says it read everything and closed. */
    if (shutdown(s, SHUT_WR) != 0)
        return tool_fail("tcp_replay", "shutdown");
    char c;
    while (recv(s, &c, 1, 0) > 0)
        ;
    close(s);
    close(fd);

    long peak_rss_kb;
    double cpu = tool_cpu_s(&peak_rss_kb);
    printf("{\"bytes\":%lld,\"seconds\":%.6f,\"cpu_seconds\":%.3f}\n", (long long)off, secs, cpu);
    return 0;
}
