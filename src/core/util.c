#include "streamgate/common.h"

#include <string.h>
#include <time.h>
#include <uv.h>

const double sg_exact_pow10[SG_EXACT_POW10_MAX + 1] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

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
