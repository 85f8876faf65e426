/* libcurl's multi interface on a libuv loop (see curl_uv.h). */
#include "curl_uv.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "streamgate/common.h"

struct cu_poll {
    uv_poll_t handle;
    curl_socket_t fd;
    struct sg_curl_uv *cu;
    struct cu_poll *prev, *next;
};

#define CU_MAX_IDLE 4

struct sg_curl_uv {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    struct cu_poll *polls;
    size_t open_handles; /* the timer and the polls not closed yet */
    bool dispatching, close_pending, closing;
    struct {
        sg_curl_uv_idle_cb cb;
        void *arg;
    } idle[CU_MAX_IDLE];
    size_t nidle;
};

static void cu_free_if_closed(struct sg_curl_uv *cu)
{
    if (cu->closing && cu->open_handles == 0)
        free(cu);
}

static void cu_close_now(struct sg_curl_uv *cu);

/* Reads what has finished and tells each transfer's owner. */
static void cu_dispatch(struct sg_curl_uv *cu)
{
    CURLMsg *msg;
    int left;
    bool any = false;
    cu->dispatching = true;
    while (!cu->close_pending && (msg = curl_multi_info_read(cu->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct sg_curl_xfer *xfer = NULL;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&xfer);
        curl_multi_remove_handle(cu->multi, easy);
        any = true;
        if (xfer && xfer->done)
            xfer->done(xfer, easy, result);
    }
    for (size_t i = 0; any && !cu->close_pending && i < cu->nidle; i++)
        cu->idle[i].cb(cu->idle[i].arg);
    cu->dispatching = false;
    if (cu->close_pending)
        cu_close_now(cu);
}

static void on_poll_closed(uv_handle_t *handle)
{
    struct cu_poll *p = sg_container_of((uv_poll_t *)handle, struct cu_poll, handle);
    struct sg_curl_uv *cu = p->cu;
    if (p->prev)
        p->prev->next = p->next;
    else
        cu->polls = p->next;
    if (p->next)
        p->next->prev = p->prev;
    free(p);
    cu->open_handles--;
    cu_free_if_closed(cu);
}

static void on_poll(uv_poll_t *handle, int status, int events)
{
    struct cu_poll *p = sg_container_of(handle, struct cu_poll, handle);
    struct sg_curl_uv *cu = p->cu;
    int flags = 0, running = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    curl_multi_socket_action(cu->multi, p->fd, flags, &running);
    cu_dispatch(cu);
}

static int on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct sg_curl_uv *cu = userp;
    struct cu_poll *p = socketp;
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (p) {
            uv_poll_stop(&p->handle);
            if (!uv_is_closing((uv_handle_t *)&p->handle))
                uv_close((uv_handle_t *)&p->handle, on_poll_closed);
            curl_multi_assign(cu->multi, s, NULL);
        }
        return 0;
    }
    if (!p) {
        p = calloc(1, sizeof(*p));
        if (!p)
            return -1;
        if (uv_poll_init_socket(cu->loop, &p->handle, s) != 0) {
            free(p);
            return -1;
        }
        cu->open_handles++;
        p->fd = s;
        p->cu = cu;
        p->next = cu->polls;
        if (cu->polls)
            cu->polls->prev = p;
        cu->polls = p;
        curl_multi_assign(cu->multi, s, p);
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    return uv_poll_start(&p->handle, events, on_poll) == 0 ? 0 : -1;
}

static void on_timer(uv_timer_t *t)
{
    struct sg_curl_uv *cu = sg_container_of(t, struct sg_curl_uv, timer);
    int running = 0;
    curl_multi_socket_action(cu->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    cu_dispatch(cu);
}

static int on_curl_timeout(CURLM *multi, long timeout_ms, void *userp)
{
    struct sg_curl_uv *cu = userp;
    (void)multi;
    if (cu->closing)
        return 0;
    if (timeout_ms < 0)
        uv_timer_stop(&cu->timer);
    else /* 0 means now: the timer runs it on the next loop iteration, never from here */
        uv_timer_start(&cu->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

static void on_timer_closed(uv_handle_t *handle)
{
    struct sg_curl_uv *cu = sg_container_of((uv_timer_t *)handle, struct sg_curl_uv, timer);
    cu->open_handles--;
    cu_free_if_closed(cu);
}

int sg_curl_uv_create(uv_loop_t *loop, long max_host_connections, struct sg_curl_uv **out)
{
    struct sg_curl_uv *cu = calloc(1, sizeof(*cu));
    if (!cu)
        return -ENOMEM;
    cu->loop = loop;
    cu->multi = curl_multi_init();
    if (!cu->multi) {
        free(cu);
        return -ENOMEM;
    }
    curl_multi_setopt(cu->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(cu->multi, CURLMOPT_SOCKETDATA, cu);
    curl_multi_setopt(cu->multi, CURLMOPT_TIMERFUNCTION, on_curl_timeout);
    curl_multi_setopt(cu->multi, CURLMOPT_TIMERDATA, cu);
    curl_multi_setopt(cu->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_host_connections);
    uv_timer_init(loop, &cu->timer);
    cu->open_handles = 1;
    *out = cu;
    return 0;
}

int sg_curl_uv_on_idle(struct sg_curl_uv *cu, sg_curl_uv_idle_cb cb, void *arg)
{
    if (cu->nidle == CU_MAX_IDLE)
        return -ENOSPC;
    cu->idle[cu->nidle].cb = cb;
    cu->idle[cu->nidle].arg = arg;
    cu->nidle++;
    return 0;
}

int sg_curl_uv_add(struct sg_curl_uv *cu, CURL *easy, struct sg_curl_xfer *xfer)
{
    if (cu->closing || cu->close_pending)
        return -ESHUTDOWN;
    curl_easy_setopt(easy, CURLOPT_PRIVATE, (char *)xfer);
    return curl_multi_add_handle(cu->multi, easy) == CURLM_OK ? 0 : -EIO;
}

void sg_curl_uv_remove(struct sg_curl_uv *cu, CURL *easy)
{
    if (cu && cu->multi)
        curl_multi_remove_handle(cu->multi, easy);
}

static void cu_close_now(struct sg_curl_uv *cu)
{
    cu->closing = true;
    /* Closing the cached connections calls the socket callback for each of them. */
    curl_multi_cleanup(cu->multi);
    cu->multi = NULL;
    for (struct cu_poll *p = cu->polls; p; p = p->next)
        if (!uv_is_closing((uv_handle_t *)&p->handle))
            uv_close((uv_handle_t *)&p->handle, on_poll_closed);
    uv_close((uv_handle_t *)&cu->timer, on_timer_closed);
}

void sg_curl_uv_close(struct sg_curl_uv *cu)
{
    if (!cu || cu->closing || cu->close_pending)
        return;
    if (cu->dispatching) {
        cu->close_pending = true; /* cu_dispatch closes it once its callback returns */
        return;
    }
    cu_close_now(cu);
}
