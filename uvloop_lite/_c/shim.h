/* Declarations of our own C (shim.c) and of the callbacks that libuv makes into
 * Python.  Read by build_uv.py into the cdef after uv_cdef.h.
 *
 * Each extern "Python" callback has the exact signature of the libuv callback
 * type it implements and is named after it: uv_timer_cb -> uvl_on_timer.
 */

/* One iteration of the loop: timeout_ms < 0 blocks until an event, 0 polls
 * without blocking, > 0 arms the loop's wake-up timer first.  One crossing
 * per iteration instead of three. */
int uvl_run(uv_loop_t* loop, uv_timer_t* wake, int64_t timeout_ms);

/* uv_async_init() with a callback that does nothing in C: the loop's
 * call_soon_threadsafe() wake-up only needs uv_run() to return. */
int uvl_async_init_wakeup(uv_loop_t* loop, uv_async_t* async);

/* uv_close() every handle of the loop that is not closing yet, with cb as the
 * close callback; returns how many were closed. */
int uvl_close_all(uv_loop_t* loop, uv_close_cb cb);

/* Count the loop's handles that are not closing (diagnostics and tests). */
int uvl_count_handles(uv_loop_t* loop);

/* UV_VERSION_HEX of the headers the extension was compiled against. */
unsigned int uvl_build_version(void);

extern "Python" {
    void uvl_on_close(uv_handle_t* handle);
    void uvl_on_poll(uv_poll_t* handle, int status, int events);
}
