#include "streamgate/common.h"

#include <string.h>
#include <time.h>
#include <uv.h>

const char *sg_strerror(int err)
{
    /* libuv's codes are negative errno values on Unix, and it knows its own extras. */
    return uv_strerror(err);
}

int64_t sg_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
