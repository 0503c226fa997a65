/* uvloop_lite's C shim: only what saves a C/Python crossing or needs uv_walk.
 * Uses libuv and libc only -- never Python.h -- so that the same source builds
 * for CPython and PyPy.  Nothing here knows asyncio's semantics. */

/* C-side copies of shim.h's declarations (shim.h itself is cdef, not C). */
typedef struct { char* base; size_t len; } uvl_read_buffer_t;

/* The extern "Python" callbacks, which cffi defines as static functions. */
static void uvl_on_alloc(uv_handle_t* handle, size_t suggested_size, uv_buf_t* buf);
static void uvl_on_stream_read(void* transport, ssize_t nread);
static void uvl_on_write(uv_write_t* req, int status);
static void uvl_on_shutdown(uv_shutdown_t* req, int status);
static void uvl_on_connection(uv_stream_t* server, int status);

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

static void uvl__alloc_loop_buffer(uv_handle_t* handle, size_t suggested, uv_buf_t* buf) {
    uvl_read_buffer_t* rb = (uvl_read_buffer_t*)handle->loop->data;
    (void)suggested;
    buf->base = rb->base;
    buf->len = rb->len;
}

/* The read callback of both: Python only needs the transport (the stream's
 * data) and nread, as the bytes are in the loop's buffer or in the one the
 * transport handed out in uvl_on_alloc.  Passing no pointers to Python saves
 * the cdata objects and attribute reads of a uv_read_cb per read. */
static void uvl__read_cb(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
    (void)buf;
    if (stream->data != NULL)
        uvl_on_stream_read(stream->data, nread);
}

int uvl_read_start(uv_stream_t* stream) {
    return uv_read_start(stream, uvl__alloc_loop_buffer, uvl__read_cb);
}

int uvl_read_start_buffered(uv_stream_t* stream) {
    return uv_read_start(stream, uvl_on_alloc, uvl__read_cb);
}

static uv_buf_t uvl__buf(const char* data, size_t len) {
    uv_buf_t b;
    b.base = (char*)data;  /* libuv never writes through a write buffer */
    b.len = len;
    return b;
}

int uvl_try_write(uv_stream_t* stream, const char* data, size_t len) {
    uv_buf_t b = uvl__buf(data, len);
    return uv_try_write(stream, &b, 1);
}

int uvl_write(uv_write_t* req, uv_stream_t* stream, const char* data, size_t len) {
    uv_buf_t b = uvl__buf(data, len);  /* uv_write copies the uv_buf_t array */
    return uv_write(req, stream, &b, 1, uvl_on_write);
}

int uvl_writev(uv_write_t* req, uv_stream_t* stream, const uv_buf_t bufs[], unsigned int nbufs) {
    return uv_write(req, stream, bufs, nbufs, uvl_on_write);
}

int uvl_shutdown(uv_shutdown_t* req, uv_stream_t* stream) {
    return uv_shutdown(req, stream, uvl_on_shutdown);
}

int uvl_listen(uv_stream_t* stream, int backlog) {
    return uv_listen(stream, backlog, uvl_on_connection);
}

unsigned int uvl_build_version(void) {
    return UV_VERSION_HEX;
}
