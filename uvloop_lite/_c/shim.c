/* uvloop_lite's C shim: only what saves a C/Python crossing or needs uv_walk.
 * Uses libuv and libc only -- never Python.h -- so that the same source builds
 * for CPython and PyPy.  Nothing here knows asyncio's semantics. */

#include <errno.h>
#include <stddef.h>
#include <sys/stat.h>
#include <pthread.h>
#include <stdlib.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>

/* C-side copies of shim.h's declarations (shim.h itself is cdef, not C). */
typedef struct { char* base; size_t len; uv_timer_t* wake; int running; } uvl_loop_data_t;
enum { UVL_LOOP_OPEN, UVL_LOOP_BUSY, UVL_LOOP_RELEASED, UVL_LOOP_KEPT };

/* The extern "Python" callbacks, which cffi defines as static functions. */
static void uvl_on_alloc(uv_handle_t* handle, size_t suggested_size, uv_buf_t* buf);
static void uvl_on_stream_read(void* transport, ssize_t nread);
static void uvl_on_write(uv_write_t* req, int status);
static void uvl_on_shutdown(uv_shutdown_t* req, int status);
static void uvl_on_udp_recv(void* transport, ssize_t nread, const char* addr, int addrlen);
static void uvl_on_udp_send(void* transport, int status);
static void uvl_on_poll(uv_poll_t* handle, int status, int events);

static void uvl__wake_cb(uv_timer_t* timer) {
    (void)timer;  /* its only job is to end uv_run(UV_RUN_ONCE) */
}

int uvl_run(uv_loop_t* loop, int64_t timeout_ms) {
    uvl_loop_data_t* d = (uvl_loop_data_t*)loop->data;
    uv_run_mode mode = UV_RUN_ONCE;
    int r;
    if (timeout_ms == 0) {
        mode = UV_RUN_NOWAIT;
    } else if (timeout_ms < 0) {
        uv_timer_stop(d->wake);
    } else {
        /* uv_now() is cached: refresh it so the deadline counts from now. */
        uv_update_time(loop);
        uv_timer_start(d->wake, uvl__wake_cb, (uint64_t)timeout_ms, 0);
    }
    d->running = 1;
    r = uv_run(loop, mode);
    d->running = 0;
    return r;
}

/* uvl_run(loop, -1) and uvl_run(loop, 0) with the loop as the only
 * argument: cffi then passes it without building and unpacking an argument
 * tuple and converting the timeout (the two cases of nearly every
 * iteration). */
int uvl_run_wait(uv_loop_t* loop) {
    return uvl_run(loop, -1);
}

int uvl_run_nowait(uv_loop_t* loop) {
    return uvl_run(loop, 0);
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

/* -- loop lifetime (see _handles/base.py) --------------------------------------
 * The uv_loop_t and the resolver requests are malloc'd, not cffi memory: a
 * loop whose teardown cannot finish at once must outlive the Python objects
 * (and, for good measure, the interpreter's own teardown). */

/* glibc's malloc serves blocks from the mmap threshold up (128 KiB at first)
 * with mmap, and gives the heap's free top back to the kernel once it passes
 * the trim threshold (2x that). Freeing an mmap'd block raises both to its
 * size: glibc's own rule for "this program uses blocks this big for a short
 * while". asyncio's loop gets there in every server (its transports recv()
 * 256 KiB at a time), uvloop's when its 256 KiB-buffer loop object is freed.
 * Our reads never allocate that much, so with large messages the heap top
 * was trimmed and regrown every few requests: 2.7 page faults per 100 KiB
 * echo against asyncio's 1.8. One 1 MiB block, freed once per process at
 * the first loop, sets the thresholds to 1 and 2 MiB (0 faults per echo).
 * A program that sets M_MMAP_THRESHOLD or M_TRIM_THRESHOLD itself keeps its
 * values: glibc then leaves them alone. */
#define UVL_HEAP_HINT (1024 * 1024)

static void uvl__heap_hint(void) {
#ifdef __GLIBC__
    static int done = 0;
    if (!done) {
        void* volatile block;   /* volatile: the pair must not be optimised out */
        done = 1;
        block = malloc(UVL_HEAP_HINT);
        free(block);
    }
#endif
}

uv_loop_t* uvl_loop_new(void) {
    uv_loop_t* loop;
    uvl__heap_hint();
    loop = (uv_loop_t*)calloc(1, sizeof(uv_loop_t));
    if (loop != NULL && uv_loop_init(loop) != 0) {
        free(loop);
        loop = NULL;
    }
    return loop;
}

void* uvl_calloc(size_t size) {
    return calloc(1, size);
}

void uvl_free(void* ptr) {
    free(ptr);
}

static void uvl__count_any(uv_handle_t* handle, void* arg) {
    (void)handle;
    (*(int*)arg)++;
}

int uvl_loop_finish(uv_loop_t* loop, uv_close_cb cb, int* state) {
    int left = 0, rounds;
    if (*state != UVL_LOOP_OPEN)
        return *state;
    uvl_close_all(loop, cb);
    /* Closing handles finish in the close phase of an iteration: a few
     * non-blocking iterations run every close callback (and those of the
     * writes and sends the closes cancel).  Nothing here waits for the
     * thread pool. */
    for (rounds = 0; rounds < 64; rounds++) {
        left = 0;
        uv_walk(loop, uvl__count_any, &left);
        if (left == 0)
            break;
        uv_run(loop, UV_RUN_NOWAIT);
        uvl_close_all(loop, cb);   /* none, unless a callback opened one */
    }
    if (left == 0 && !uv_loop_alive(loop) && uv_loop_close(loop) == 0) {
        free(loop);
        *state = UVL_LOOP_RELEASED;
    } else {
        *state = left == 0 ? UVL_LOOP_BUSY : UVL_LOOP_KEPT;
    }
    return *state;
}

static void uvl__gai_drop(uv_getaddrinfo_t* req, int status, struct addrinfo* res) {
    (void)status;
    uv_freeaddrinfo(res);
    free(req);
}

static void uvl__gni_drop(uv_getnameinfo_t* req, int status, const char* host,
                          const char* service) {
    (void)status;
    (void)host;
    (void)service;
    free(req);
}

void uvl_req_abandon(uv_req_t* req) {
    req->data = NULL;
    if (req->type == UV_GETADDRINFO)
        ((uv_getaddrinfo_t*)req)->cb = uvl__gai_drop;
    else if (req->type == UV_GETNAMEINFO)
        ((uv_getnameinfo_t*)req)->getnameinfo_cb = uvl__gni_drop;
}

static void* uvl__drain(void* arg) {
    uv_loop_t* loop = (uv_loop_t*)arg;
    uv_run(loop, UV_RUN_DEFAULT);   /* until the last request has called back */
    if (uv_loop_close(loop) == 0)
        free(loop);
    return NULL;
}

int uvl_loop_close_later(uv_loop_t* loop, int* state) {
    pthread_t thread;
    pthread_attr_t attr;
    int rc;
    if (*state != UVL_LOOP_BUSY)
        return *state;
    loop->data = NULL;   /* the Python side of the loop is gone */
    rc = pthread_attr_init(&attr);
    if (rc == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        rc = pthread_create(&thread, &attr, uvl__drain, loop);
        pthread_attr_destroy(&attr);
    }
    *state = rc == 0 ? UVL_LOOP_RELEASED : UVL_LOOP_KEPT;
    return *state;
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
    uvl_loop_data_t* rb = (uvl_loop_data_t*)handle->loop->data;
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

/* No buffer: libuv reads nothing and calls the read callback with
 * UV_ENOBUFS, and Python reads the socket itself (uvl_read_direct). */
static void uvl__alloc_none(uv_handle_t* handle, size_t suggested, uv_buf_t* buf) {
    (void)handle;
    (void)suggested;
    buf->base = NULL;
    buf->len = 0;
}

int uvl_read_direct(uv_stream_t* stream, int direct) {
    /* alloc_cb is a public field of uv_stream_t, read by libuv before each
     * read; only a stream reading into the loop's buffer changes mode. */
    if (stream->read_cb != uvl__read_cb)
        return 0;
    if (stream->alloc_cb != uvl__alloc_loop_buffer && stream->alloc_cb != uvl__alloc_none)
        return 0;
    stream->alloc_cb = direct ? uvl__alloc_none : uvl__alloc_loop_buffer;
    return 1;
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

/* A socket option of fd, or -1 if it cannot be read. */
static int uvl__sockopt(int fd, int name) {
    int value = 0;
    socklen_t len = sizeof(value);
    if (getsockopt(fd, SOL_SOCKET, name, &value, &len) != 0)
        return -1;
    return value;
}

static void uvl__restore_sockopt(int fd, int name, int before) {
    int now = uvl__sockopt(fd, name);
    if (before >= 0 && now >= 0 && (now != 0) != (before != 0))
        setsockopt(fd, SOL_SOCKET, name, &before, sizeof(before));
}

int uvl_udp_open(uv_udp_t* handle, int fd) {
    int rc;
    int reuseaddr = uvl__sockopt(fd, SO_REUSEADDR);
#ifdef SO_REUSEPORT
    int reuseport = uvl__sockopt(fd, SO_REUSEPORT);
#endif
    rc = uv_udp_open(handle, (uv_os_sock_t)fd);
    if (rc == 0) {
        /* A datagram socket handed to the loop keeps the options its owner
         * chose: SO_REUSEADDR would let other sockets bind its address. */
        uvl__restore_sockopt(fd, SO_REUSEADDR, reuseaddr);
#ifdef SO_REUSEPORT
        uvl__restore_sockopt(fd, SO_REUSEPORT, reuseport);
#endif
    }
    return rc;
}

static void uvl__udp_recv_cb(uv_udp_t* handle, ssize_t nread, const uv_buf_t* buf,
                             const struct sockaddr* addr, unsigned flags) {
    int addrlen = 0;
    (void)buf;    /* always the loop's buffer */
    (void)flags;  /* UV_UDP_PARTIAL: truncated to the buffer, as recvfrom() does */
    if (handle->data == NULL)
        return;
    if (addr == NULL) {
        if (nread == 0)
            return;  /* EAGAIN: nothing was read */
    } else if (addr->sa_family == AF_INET) {
        addrlen = (int)sizeof(struct sockaddr_in);
    } else if (addr->sa_family == AF_INET6) {
        addrlen = (int)sizeof(struct sockaddr_in6);
    }
    uvl_on_udp_recv(handle->data, nread, (const char*)addr, addrlen);
}

int uvl_udp_recv_start(uv_udp_t* handle) {
    return uv_udp_recv_start(handle, uvl__alloc_loop_buffer, uvl__udp_recv_cb);
}

/* uv_udp_try_send() with send()/sendto() instead of sendmsg(), which costs
 * the kernel more per call (measured: ~10% of a small datagram's send).
 * Same contract: UV_EAGAIN while libuv has sends queued or the kernel pushes
 * back (ENOBUFS included, as libuv treats it), else bytes sent or -errno. */
int uvl_udp_try_send(uv_udp_t* handle, const char* data, size_t len, const char* addr) {
    const struct sockaddr* sa = (const struct sockaddr*)addr;
    uv_os_fd_t fd;
    ssize_t r;
    int err;
    if (handle->send_queue_count != 0)
        return UV_EAGAIN;
    if (uv_fileno((const uv_handle_t*)handle, &fd) != 0)
        return UV_EBADF;
    do {
        if (sa == NULL)
            r = send(fd, data, len, 0);
        else
            r = sendto(fd, data, len, 0, sa, sa->sa_family == AF_INET6
                       ? (socklen_t)sizeof(struct sockaddr_in6)
                       : (socklen_t)sizeof(struct sockaddr_in));
    } while (r == -1 && errno == EINTR);
    if (r < 0) {
        err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS)
            return UV_EAGAIN;
        return -err;
    }
    return (int)r;
}

ssize_t uvl_sock_recv(int fd, char* buf, size_t len) {
    ssize_t r = recv(fd, buf, len, 0);
    if (r < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return r;
}

ssize_t uvl_sock_send(int fd, const char* data, size_t len) {
    ssize_t r = send(fd, data, len, 0);
    if (r < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return r;
}

/* Requests complete in the order they were queued (cancelled ones too, when
 * the handle closes), so the transport only needs to know which one: the
 * oldest.  handle->data is still set while libuv cancels at close. */
static void uvl__udp_send_cb(uv_udp_send_t* req, int status) {
    if (req->handle->data != NULL)
        uvl_on_udp_send(req->handle->data, status);
}

int uvl_udp_send(uv_udp_send_t* req, uv_udp_t* handle, const char* data, size_t len,
                 const char* addr) {
    uv_buf_t b = uvl__buf(data, len);  /* libuv copies the uv_buf_t array and addr */
    return uv_udp_send(req, handle, &b, 1, (const struct sockaddr*)addr, uvl__udp_send_cb);
}

/* -- fd watchers (uv_poll_t) ------------------------------------------------
 *
 * libuv aborts the process when epoll_ctl() refuses the fd of a poll it is
 * about to watch (closed: EBADF; a regular file: EPERM).  A poll whose socket
 * was closed behind its back, its fd number maybe taken by another file, must
 * never get there.  Each poll remembers which file its fd named when it was
 * made (st_dev, st_ino): uvl_poll_start() refuses to start a poll whose fd no
 * longer names that file, and the guard (a prepare handle, so it runs right
 * before libuv's poll phase, after every callback of the iteration) stops
 * every such poll that libuv is about to hand to epoll_ctl(). */

/* just_made: the fd was checked by uvl_poll_init(), and the first start
 * follows at once (saves a system call per poll). */
typedef struct { uv_poll_t poll; dev_t dev; ino_t ino; int just_made; } uvl_poll_t;

/* libuv's I/O callback of every uv_poll_t: tells polls apart from the other
 * watchers in the loop's queue of epoll_ctl() changes. */
static uv__io_cb uvl__poll_io_cb;

/* The error epoll_ctl(MOD) gives for the file now at fd (which asyncio's
 * selector would raise): EPERM if it cannot be polled, else ENOENT. */
static int uvl__other_file(const struct stat* st) {
    if (S_ISSOCK(st->st_mode) || S_ISFIFO(st->st_mode) || S_ISCHR(st->st_mode))
        return UV_ENOENT;
    return UV_EPERM;
}

/* 0 if p's fd still names the file it named at uvl_poll_init(), else the
 * error that watching it would get. */
static int uvl__poll_stale(const uvl_poll_t* p) {
    struct stat st;
    if (fstat(p->poll.io_watcher.fd, &st) != 0)
        return -errno;  /* libuv errors are -errno on Unix */
    if (st.st_dev != p->dev || st.st_ino != p->ino)
        return uvl__other_file(&st);
    return 0;
}

int uvl_poll_init(uv_loop_t* loop, uvl_poll_t* p, int fd) {
    struct stat st;
    int rc;
    if (fstat(fd, &st) != 0)
        return -errno;  /* libuv errors are -errno on Unix */
    rc = uv_poll_init(loop, &p->poll, fd);
    if (rc == 0) {
        p->dev = st.st_dev;
        p->ino = st.st_ino;
        p->just_made = 1;
        uvl__poll_io_cb = p->poll.io_watcher.cb;
    }
    return rc;
}

int uvl_poll_start(uvl_poll_t* p, int events) {
    int rc;
    if (events == 0) {
        p->just_made = 0;
        return uv_poll_stop(&p->poll);
    }
    if (p->just_made) {
        p->just_made = 0;  /* the guard still checks it before libuv's poll */
    } else {
        rc = uvl__poll_stale(p);
        if (rc != 0)
            return rc;
    }
    return uv_poll_start(&p->poll, events, uvl_on_poll);
}

/* Both queue layouts (struct uv__queue, and void*[2] before libuv 1.47)
 * start with the next pointer. */
struct uvl__queue { struct uvl__queue* next; struct uvl__queue* prev; };

/* uv_poll_start() always stops the poll first (EPOLL_CTL_DEL), so libuv
 * adds every queued poll to epoll afresh: that succeeds as long as the fd
 * still names the file it named at uvl_poll_init(). */
static void uvl__poll_guard_cb(uv_prepare_t* guard) {
    uv_loop_t* loop = guard->loop;
    struct uvl__queue* head = (struct uvl__queue*)(void*)&loop->watcher_queue;
    struct uvl__queue* q;
    struct uvl__queue* next;
    uv__io_t* w;
    uvl_poll_t* p;
    for (q = head->next; q != head; q = next) {
        next = q->next;  /* uv_poll_stop() takes q out of the queue */
        w = (uv__io_t*)(void*)((char*)q - offsetof(uv__io_t, watcher_queue));
        if (w->cb != uvl__poll_io_cb || uvl__poll_io_cb == NULL)
            continue;
        p = (uvl_poll_t*)(void*)((char*)w - offsetof(uv_poll_t, io_watcher));
        if (uvl__poll_stale(p) != 0)
            uv_poll_stop(&p->poll);
    }
}

int uvl_poll_guard_init(uv_loop_t* loop, uv_prepare_t* guard) {
    int rc = uv_prepare_init(loop, guard);
    if (rc != 0)
        return rc;
    uv_prepare_start(guard, uvl__poll_guard_cb);
    uv_unref((uv_handle_t*)guard);  /* never keeps the loop alive */
    return 0;
}

static void uvl__show_fds(const int* fds, int n) {
    int i, flags;
    for (i = 0; i < n; i++) {
        flags = fcntl(fds[i], F_GETFD);
        if (flags != -1)
            fcntl(fds[i], F_SETFD, flags & ~FD_CLOEXEC);
    }
}

int uvl_hide_inherited_fds(const int* keep, int nkeep, int** hidden) {
    DIR* dir = opendir("/proc/self/fd");
    struct dirent* ent;
    int *out = NULL, *grown;
    int n = 0, cap = 0, fd, flags, i, kept;
    char* end;
    long v;
    *hidden = NULL;
    if (dir == NULL)
        dir = opendir("/dev/fd");
    if (dir == NULL)
        return 0;
    while ((ent = readdir(dir)) != NULL) {
        v = strtol(ent->d_name, &end, 10);
        if (end == ent->d_name || *end != '\0' || v < 3 || v > INT_MAX)
            continue;  /* ".", "..", stdio */
        fd = (int)v;
        if (fd == dirfd(dir))
            continue;
        for (kept = 0, i = 0; i < nkeep && !kept; i++)
            kept = keep[i] == fd;
        if (kept)
            continue;
        flags = fcntl(fd, F_GETFD);
        if (flags == -1 || (flags & FD_CLOEXEC))
            continue;  /* closed since it was listed, or not inheritable */
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            grown = (int*)realloc(out, (size_t)cap * sizeof(int));
            if (grown == NULL) {
                uvl__show_fds(out, n);
                free(out);
                closedir(dir);
                errno = ENOMEM;
                return -1;
            }
            out = grown;
        }
        if (fcntl(fd, F_SETFD, flags | FD_CLOEXEC) == 0)
            out[n++] = fd;
    }
    closedir(dir);
    if (n == 0) {
        free(out);
        out = NULL;
    }
    *hidden = out;
    return n;
}

unsigned int uvl_build_version(void) {
    return UV_VERSION_HEX;
}
