/* uvloop_lite's C shim: only what saves a C/Python crossing or needs uv_walk.
 * Uses libuv and libc only -- never Python.h -- so that the same source builds
 * for CPython and PyPy.  Nothing here knows asyncio's semantics. */

static void uvl__wake_cb(uv_timer_t* timer) {
    (void)timer;  /* its only job is to end uv_run(UV_RUN_ONCE) */
}

int uvl_run(uv_loop_t* loop, uv_timer_t* wake, int64_t timeout_ms) {
    if (timeout_ms == 0)
        return uv_run(loop, UV_RUN_NOWAIT);
    if (timeout_ms < 0) {
        uv_timer_stop(wake);
    } else {
        /* uv_now() is cached: refresh it so the deadline counts from now. */
        uv_update_time(loop);
        uv_timer_start(wake, uvl__wake_cb, (uint64_t)timeout_ms, 0);
    }
    return uv_run(loop, UV_RUN_ONCE);
}

static void uvl__wakeup_cb(uv_async_t* async) {
    (void)async;  /* the ready queue is run by Python once uv_run returns */
}

int uvl_async_init_wakeup(uv_loop_t* loop, uv_async_t* async) {
    return uv_async_init(loop, async, uvl__wakeup_cb);
}

struct uvl__close_all_arg {
    uv_close_cb cb;
    int count;
};

static void uvl__close_one(uv_handle_t* handle, void* arg) {
    struct uvl__close_all_arg* a = (struct uvl__close_all_arg*)arg;
    if (!uv_is_closing(handle)) {
        uv_close(handle, a->cb);
        a->count++;
    }
}

int uvl_close_all(uv_loop_t* loop, uv_close_cb cb) {
    struct uvl__close_all_arg a;
    a.cb = cb;
    a.count = 0;
    uv_walk(loop, uvl__close_one, &a);
    return a.count;
}

static void uvl__count_one(uv_handle_t* handle, void* arg) {
    if (!uv_is_closing(handle))
        (*(int*)arg)++;
}

int uvl_count_handles(uv_loop_t* loop) {
    int n = 0;
    uv_walk(loop, uvl__count_one, &n);
    return n;
}

unsigned int uvl_build_version(void) {
    return UV_VERSION_HEX;
}
