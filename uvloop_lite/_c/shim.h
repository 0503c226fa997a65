/* Declarations of our own C (shim.c) and of the callbacks that libuv makes into
 * Python.  Read by build_uv.py into the cdef after uv_cdef.h.
 *
 * Each extern "Python" callback has the exact signature of the libuv callback
 * type it implements and is named after it: uv_timer_cb -> uvl_on_timer.
 */

/* What uv_loop_t.data points at, owned by the Python Loop: the loop-wide read
 * buffer (see uvl_read_start), the wake-up timer, and whether uvl_run() is
 * inside uv_run() (Python reads it only on rare paths). */
typedef struct { char* base; size_t len; uv_timer_t* wake; int running; } uvl_loop_data_t;

/* One iteration of the loop: timeout_ms < 0 blocks until an event, 0 polls
 * without blocking, > 0 arms the loop's wake-up timer first.  One crossing
 * per iteration instead of three. */
int uvl_run(uv_loop_t* loop, int64_t timeout_ms);
int uvl_run_wait(uv_loop_t* loop);
int uvl_run_nowait(uv_loop_t* loop);

/* uv_async_init() with a callback that does nothing in C: the loop's
 * call_soon_threadsafe() wake-up only needs uv_run() to return. */
int uvl_async_init_wakeup(uv_loop_t* loop, uv_async_t* async);

/* uv_close() every handle of the loop that is not closing yet, with cb as the
 * close callback; returns how many were closed. */
int uvl_close_all(uv_loop_t* loop, uv_close_cb cb);

/* Loop lifetime (see _handles/base.py, "Closing the loop").
 * uvl_loop_new(): a malloc'd, initialised uv_loop_t (NULL on failure).
 * uvl_calloc()/uvl_free(): memory that may have to outlive its Python owner.
 * The teardown state lives in Python memory (int *state) and is written by C
 * before returning, so an exception raised between two Python steps never
 * leaves it unknown.  uvl_loop_finish(): from OPEN, close every handle, run
 * the loop without blocking until every close callback ran, then close and
 * free it (RELEASED), or stop at BUSY (requests still in the thread pool) or
 * KEPT (handles would not finish: the memory is kept for good).
 * uvl_req_abandon(): a resolver request's callback becomes C code that frees
 * the request and its result, calling no Python.  uvl_loop_close_later():
 * from BUSY, a detached thread runs the loop until the thread pool is done
 * with it, then closes and frees it (RELEASED), or KEPT if no thread. */
enum { UVL_LOOP_OPEN, UVL_LOOP_BUSY, UVL_LOOP_RELEASED, UVL_LOOP_KEPT };
uv_loop_t* uvl_loop_new(void);
void* uvl_calloc(size_t size);
void uvl_free(void* ptr);
int uvl_loop_finish(uv_loop_t* loop, uv_close_cb cb, int* state);
void uvl_req_abandon(uv_req_t* req);
int uvl_loop_close_later(uv_loop_t* loop, int* state);

/* Count the loop's handles that are not closing (diagnostics and tests). */
int uvl_count_handles(uv_loop_t* loop);

/* uvl_read_start() hands the loop-wide read buffer (uvl_loop_data_t) to
 * every read; the read callback copies the bytes out before returning, so one
 * buffer serves all streams.  uvl_read_start_buffered() asks the protocol's
 * get_buffer() instead (uvl_on_alloc), so BufferedProtocol reads land without
 * a copy. */
int uvl_read_start(uv_stream_t* stream);
int uvl_read_start_buffered(uv_stream_t* stream);
/* Direct mode (direct=1) for a stream started with uvl_read_start(): libuv
 * reads nothing and reports UV_ENOBUFS on readiness, for Python to recv()
 * into a bytes object of its own (large reads: no copy out of the loop's
 * buffer).  direct=0 goes back to the loop's buffer.  Returns 1 if the mode
 * was set, 0 if the stream is not reading into the loop's buffer. */
int uvl_read_direct(uv_stream_t* stream, int direct);

/* One-buffer writes and the other stream requests, with our callbacks. */
int uvl_try_write(uv_stream_t* stream, const char* data, size_t len);
int uvl_write(uv_write_t* req, uv_stream_t* stream, const char* data, size_t len);
int uvl_writev(uv_write_t* req, uv_stream_t* stream, const uv_buf_t bufs[], unsigned int nbufs);
int uvl_shutdown(uv_shutdown_t* req, uv_stream_t* stream);

/* UDP (uv_udp_t).  uvl_udp_open() is uv_udp_open() that leaves the socket's
 * options as they were (libuv turns SO_REUSEADDR, or SO_REUSEPORT on BSDs,
 * on).  uvl_udp_recv_start() reads into the loop-wide buffer; its callback
 * hands Python the transport, nread and the sender's sockaddr with its length
 * (sizeof sockaddr_in/_in6, 0 for none), and skips libuv's "nothing read"
 * calls.  Sends take one buffer; addr is a struct sockaddr, NULL on a
 * connected socket.  uvl_udp_try_send() is uv_udp_try_send() done with
 * send()/sendto(), cheaper than libuv's sendmsg(). */
int uvl_udp_open(uv_udp_t* handle, int fd);
int uvl_udp_recv_start(uv_udp_t* handle);
int uvl_udp_try_send(uv_udp_t* handle, const char* data, size_t len, const char* addr);
int uvl_udp_send(uv_udp_send_t* req, uv_udp_t* handle, const char* data, size_t len, const char* addr);

/* recv(fd, buf, len, 0) and send(fd, data, len, 0) for the loop's sock_*
 * methods: the byte count, or -errno (-EAGAIN for EWOULDBLOCK too), so that a
 * call that would block costs no Python exception.  EINTR is returned, not
 * retried: Python retries through the socket object, running signal handlers
 * first, as socket.recv()/send() do. */
ssize_t uvl_sock_recv(int fd, char* buf, size_t len);
ssize_t uvl_sock_send(int fd, const char* data, size_t len);

/* fd watchers.  A uvl_poll_t is a uv_poll_t (its first member) that also
 * remembers which file its fd named at uvl_poll_init(): uvl_poll_start()
 * fails (UV_EBADF, or UV_EPERM/UV_ENOENT as epoll would for the file now
 * there) instead of starting it once the fd names another file; events 0
 * stops it.  uvl_poll_guard_init() starts the loop's (unreferenced) prepare
 * handle that, right before each poll phase, stops every poll that libuv is
 * about to hand to epoll_ctl() and whose fd no longer names its file (libuv
 * aborts when epoll refuses a fd). */
typedef struct { uv_poll_t poll; ...; } uvl_poll_t;
int uvl_poll_init(uv_loop_t* loop, uvl_poll_t* p, int fd);
int uvl_poll_start(uvl_poll_t* p, int events);
int uvl_poll_guard_init(uv_loop_t* loop, uv_prepare_t* guard);

/* close_fds=True for uv_spawn, which has no such option: mark FD_CLOEXEC
 * every inheritable fd from 3 up that is not in keep[0..nkeep), listed from
 * /proc/self/fd (else /dev/fd; neither: nothing is done).  Done in C so that
 * no Python filesystem call runs in the loop's thread.  Returns how many fds
 * were changed and stores a uvl_free()able array of them in *hidden (NULL
 * when none), to be made inheritable again after the spawn; -1 (nothing
 * changed) if out of memory. */
int uvl_hide_inherited_fds(const int* keep, int nkeep, int** hidden);

/* UV_VERSION_HEX of the headers the extension was compiled against. */
unsigned int uvl_build_version(void);

extern "Python" {
    void uvl_on_close(uv_handle_t* handle);
    void uvl_on_poll(uv_poll_t* handle, int status, int events);
    void uvl_on_alloc(uv_handle_t* handle, size_t suggested_size, uv_buf_t* buf);
    /* Not a uv_read_cb: called by shim.c's read callback with stream->data. */
    void uvl_on_stream_read(void* transport, ssize_t nread);
    void uvl_on_write(uv_write_t* req, int status);
    void uvl_on_shutdown(uv_shutdown_t* req, int status);
    /* Not a uv_udp_recv_cb: called by shim.c's recv callback with handle->data. */
    void uvl_on_udp_recv(void* transport, ssize_t nread, const char* addr, int addrlen);
    /* Not a uv_udp_send_cb: called by shim.c's send callback with handle->data. */
    void uvl_on_udp_send(void* transport, int status);
    void uvl_on_signal(uv_signal_t* handle, int signum);
    void uvl_on_exit(uv_process_t* process, int64_t exit_status, int term_signal);
    void uvl_on_getaddrinfo(uv_getaddrinfo_t* req, int status, struct addrinfo* res);
    void uvl_on_getnameinfo(uv_getnameinfo_t* req, int status, const char* hostname, const char* service);
}
