/* libuv's public API as cffi sees it: the only declaration of libuv in the project.
 *
 * Sections follow libuv's documentation (errors, version, loop, handle, request,
 * timer, async, poll, signal, process, stream, tcp, pipe, tty, udp, dns, misc).
 * Signatures are copied from uv.h.  Structs list only the fields Python reads,
 * then "...;" so that cffi takes the real layout from uv.h at build time.
 * Values of constants come from the C compiler ("...").
 */

/* ---- libc / socket types we pass through -------------------------------- */
typedef int... sa_family_t;
typedef int... socklen_t;
struct sockaddr { sa_family_t sa_family; ...; };
struct sockaddr_storage { sa_family_t ss_family; ...; };
struct sockaddr_in { sa_family_t sin_family; uint16_t sin_port; ...; };
struct sockaddr_in6 { sa_family_t sin6_family; uint16_t sin6_port; uint32_t sin6_flowinfo; uint32_t sin6_scope_id; ...; };
struct addrinfo {
    int ai_flags;
    int ai_family;
    int ai_socktype;
    int ai_protocol;
    socklen_t ai_addrlen;
    struct sockaddr *ai_addr;
    char *ai_canonname;
    struct addrinfo *ai_next;
    ...;
};
#define AF_INET ...
#define AF_INET6 ...
#define AF_UNIX ...
#define AF_UNSPEC ...
#define NI_MAXHOST ...
#define NI_MAXSERV ...
const char* gai_strerror(int errcode);   /* libc: the message socket.gaierror carries */

/* ---- errors -------------------------------------------------------------- */
#define UV_EOF ...
#define UV_EAGAIN ...
#define UV_EBADF ...
#define UV_EBUSY ...
#define UV_ECANCELED ...
#define UV_ECONNRESET ...
#define UV_EINVAL ...
#define UV_ENOTCONN ...
#define UV_EPIPE ...
#define UV_ENOBUFS ...
#define UV_ENOSYS ...
#define UV_EAI_ADDRFAMILY ...
#define UV_EAI_AGAIN ...
#define UV_EAI_BADFLAGS ...
#define UV_EAI_BADHINTS ...
#define UV_EAI_CANCELED ...
#define UV_EAI_FAIL ...
#define UV_EAI_FAMILY ...
#define UV_EAI_MEMORY ...
#define UV_EAI_NODATA ...
#define UV_EAI_NONAME ...
#define UV_EAI_OVERFLOW ...
#define UV_EAI_PROTOCOL ...
#define UV_EAI_SERVICE ...
#define UV_EAI_SOCKTYPE ...
const char* uv_strerror(int err);
const char* uv_err_name(int err);
int uv_translate_sys_error(int sys_errno);

/* ---- version ------------------------------------------------------------- */
#define UV_VERSION_MAJOR ...
#define UV_VERSION_MINOR ...
#define UV_VERSION_PATCH ...
unsigned int uv_version(void);
const char* uv_version_string(void);

/* ---- loop ---------------------------------------------------------------- */
typedef enum { UV_RUN_DEFAULT, UV_RUN_ONCE, UV_RUN_NOWAIT } uv_run_mode;
typedef struct uv_loop_s { void* data; ...; } uv_loop_t;
int uv_loop_init(uv_loop_t* loop);
int uv_loop_close(uv_loop_t* loop);
int uv_loop_alive(const uv_loop_t* loop);
int uv_run(uv_loop_t*, uv_run_mode mode);
void uv_stop(uv_loop_t*);
uint64_t uv_now(const uv_loop_t*);
void uv_update_time(uv_loop_t*);
int uv_backend_fd(const uv_loop_t*);
int uv_loop_fork(uv_loop_t* loop);

/* ---- buffers ------------------------------------------------------------- */
typedef struct { char* base; size_t len; ...; } uv_buf_t;
uv_buf_t uv_buf_init(char* base, unsigned int len);

/* ---- handle -------------------------------------------------------------- */
typedef enum {
    UV_UNKNOWN_HANDLE, UV_ASYNC, UV_CHECK, UV_FS_EVENT, UV_FS_POLL, UV_HANDLE,
    UV_IDLE, UV_NAMED_PIPE, UV_POLL, UV_PREPARE, UV_PROCESS, UV_STREAM, UV_TCP,
    UV_TIMER, UV_TTY, UV_UDP, UV_SIGNAL, UV_FILE, UV_HANDLE_TYPE_MAX
} uv_handle_type;
typedef struct uv_handle_s { void* data; uv_loop_t* loop; uv_handle_type type; ...; } uv_handle_t;
typedef void (*uv_close_cb)(uv_handle_t* handle);
typedef void (*uv_alloc_cb)(uv_handle_t* handle, size_t suggested_size, uv_buf_t* buf);
typedef void (*uv_walk_cb)(uv_handle_t* handle, void* arg);
void uv_close(uv_handle_t* handle, uv_close_cb close_cb);
int uv_is_active(const uv_handle_t* handle);
int uv_is_closing(const uv_handle_t* handle);
void uv_ref(uv_handle_t*);
void uv_unref(uv_handle_t*);
int uv_has_ref(const uv_handle_t*);
void uv_walk(uv_loop_t* loop, uv_walk_cb walk_cb, void* arg);
size_t uv_handle_size(uv_handle_type type);
typedef int uv_os_fd_t;      /* int on Unix; uv.h spells it through uv-unix.h */
typedef int uv_os_sock_t;
int uv_fileno(const uv_handle_t* handle, uv_os_fd_t* fd);

/* ---- request ------------------------------------------------------------- */
typedef struct uv_req_s { void* data; ...; } uv_req_t;
int uv_cancel(uv_req_t* req);

/* ---- timer --------------------------------------------------------------- */
typedef struct uv_timer_s { void* data; uv_loop_t* loop; ...; } uv_timer_t;
typedef void (*uv_timer_cb)(uv_timer_t* handle);
int uv_timer_init(uv_loop_t*, uv_timer_t* handle);
int uv_timer_start(uv_timer_t* handle, uv_timer_cb cb, uint64_t timeout, uint64_t repeat);
int uv_timer_stop(uv_timer_t* handle);

/* ---- async --------------------------------------------------------------- */
typedef struct uv_async_s { void* data; uv_loop_t* loop; ...; } uv_async_t;
typedef void (*uv_async_cb)(uv_async_t* handle);
int uv_async_init(uv_loop_t*, uv_async_t* async, uv_async_cb async_cb);
int uv_async_send(uv_async_t* async);

/* ---- idle / check -------------------------------------------------------- */
typedef struct uv_idle_s { void* data; uv_loop_t* loop; ...; } uv_idle_t;
typedef void (*uv_idle_cb)(uv_idle_t* handle);
int uv_idle_init(uv_loop_t*, uv_idle_t* idle);
int uv_idle_start(uv_idle_t* idle, uv_idle_cb cb);
int uv_idle_stop(uv_idle_t* idle);
typedef struct uv_check_s { void* data; uv_loop_t* loop; ...; } uv_check_t;
typedef void (*uv_check_cb)(uv_check_t* handle);
int uv_check_init(uv_loop_t*, uv_check_t* check);
int uv_check_start(uv_check_t* check, uv_check_cb cb);
int uv_check_stop(uv_check_t* check);

/* ---- poll ---------------------------------------------------------------- */
#define UV_READABLE ...
#define UV_WRITABLE ...
#define UV_DISCONNECT ...
typedef struct uv_poll_s { void* data; uv_loop_t* loop; ...; } uv_poll_t;
typedef void (*uv_poll_cb)(uv_poll_t* handle, int status, int events);
int uv_poll_init(uv_loop_t* loop, uv_poll_t* handle, int fd);
int uv_poll_init_socket(uv_loop_t* loop, uv_poll_t* handle, uv_os_sock_t socket);
int uv_poll_start(uv_poll_t* handle, int events, uv_poll_cb cb);
int uv_poll_stop(uv_poll_t* handle);
typedef struct uv_prepare_s { void* data; uv_loop_t* loop; ...; } uv_prepare_t;

/* ---- signal -------------------------------------------------------------- */
typedef struct uv_signal_s { void* data; uv_loop_t* loop; int signum; ...; } uv_signal_t;
typedef void (*uv_signal_cb)(uv_signal_t* handle, int signum);
int uv_signal_init(uv_loop_t* loop, uv_signal_t* handle);
int uv_signal_start(uv_signal_t* handle, uv_signal_cb signal_cb, int signum);
int uv_signal_start_oneshot(uv_signal_t* handle, uv_signal_cb signal_cb, int signum);
int uv_signal_stop(uv_signal_t* handle);

/* ---- process ------------------------------------------------------------- */
typedef struct uv_process_s { void* data; uv_loop_t* loop; int pid; ...; } uv_process_t;
typedef void (*uv_exit_cb)(uv_process_t*, int64_t exit_status, int term_signal);
typedef enum {
    UV_IGNORE, UV_CREATE_PIPE, UV_INHERIT_FD, UV_INHERIT_STREAM,
    UV_READABLE_PIPE, UV_WRITABLE_PIPE, UV_NONBLOCK_PIPE, UV_OVERLAPPED_PIPE
} uv_stdio_flags;
typedef struct uv_stream_s uv_stream_t;
typedef struct uv_stdio_container_s {
    uv_stdio_flags flags;
    union { uv_stream_t* stream; int fd; } data;
} uv_stdio_container_t;
typedef struct uv_process_options_s {
    uv_exit_cb exit_cb;
    const char* file;
    char** args;
    char** env;
    const char* cwd;
    unsigned int flags;
    int stdio_count;
    uv_stdio_container_t* stdio;
    uint32_t uid;   /* uv_uid_t: uid_t on Unix */
    uint32_t gid;   /* uv_gid_t: gid_t on Unix */
    ...;
} uv_process_options_t;
#define UV_PROCESS_SETUID ...
#define UV_PROCESS_SETGID ...
#define UV_PROCESS_DETACHED ...
int uv_spawn(uv_loop_t* loop, uv_process_t* handle, const uv_process_options_t* options);
int uv_process_kill(uv_process_t*, int signum);
int uv_kill(int pid, int signum);
int uv_process_get_pid(const uv_process_t*);

/* ---- stream -------------------------------------------------------------- */
struct uv_stream_s { void* data; uv_loop_t* loop; uv_handle_type type; size_t write_queue_size; ...; };
typedef struct uv_write_s { void* data; uv_stream_t* handle; ...; } uv_write_t;
typedef struct uv_connect_s { void* data; uv_stream_t* handle; ...; } uv_connect_t;
typedef struct uv_shutdown_s { void* data; uv_stream_t* handle; ...; } uv_shutdown_t;
typedef void (*uv_read_cb)(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
typedef void (*uv_write_cb)(uv_write_t* req, int status);
typedef void (*uv_connect_cb)(uv_connect_t* req, int status);
typedef void (*uv_shutdown_cb)(uv_shutdown_t* req, int status);
typedef void (*uv_connection_cb)(uv_stream_t* server, int status);
int uv_shutdown(uv_shutdown_t* req, uv_stream_t* handle, uv_shutdown_cb cb);
int uv_listen(uv_stream_t* stream, int backlog, uv_connection_cb cb);
int uv_accept(uv_stream_t* server, uv_stream_t* client);
int uv_read_start(uv_stream_t*, uv_alloc_cb alloc_cb, uv_read_cb read_cb);
int uv_read_stop(uv_stream_t*);
int uv_write(uv_write_t* req, uv_stream_t* handle, const uv_buf_t bufs[], unsigned int nbufs, uv_write_cb cb);
int uv_try_write(uv_stream_t* handle, const uv_buf_t bufs[], unsigned int nbufs);
int uv_is_readable(const uv_stream_t* handle);
int uv_is_writable(const uv_stream_t* handle);
int uv_stream_set_blocking(uv_stream_t* handle, int blocking);
size_t uv_stream_get_write_queue_size(const uv_stream_t* stream);

/* ---- tcp ----------------------------------------------------------------- */
typedef struct uv_tcp_s { void* data; uv_loop_t* loop; ...; } uv_tcp_t;
int uv_tcp_init(uv_loop_t*, uv_tcp_t* handle);
int uv_tcp_init_ex(uv_loop_t*, uv_tcp_t* handle, unsigned int flags);
int uv_tcp_open(uv_tcp_t* handle, uv_os_sock_t sock);
int uv_tcp_nodelay(uv_tcp_t* handle, int enable);
int uv_tcp_keepalive(uv_tcp_t* handle, int enable, unsigned int delay);
int uv_tcp_bind(uv_tcp_t* handle, const struct sockaddr* addr, unsigned int flags);
int uv_tcp_getsockname(const uv_tcp_t* handle, struct sockaddr* name, int* namelen);
int uv_tcp_getpeername(const uv_tcp_t* handle, struct sockaddr* name, int* namelen);
int uv_tcp_connect(uv_connect_t* req, uv_tcp_t* handle, const struct sockaddr* addr, uv_connect_cb cb);
int uv_tcp_close_reset(uv_tcp_t* handle, uv_close_cb close_cb);

/* ---- pipe ---------------------------------------------------------------- */
typedef struct uv_pipe_s { void* data; uv_loop_t* loop; ...; } uv_pipe_t;
int uv_pipe_init(uv_loop_t*, uv_pipe_t* handle, int ipc);
int uv_pipe_open(uv_pipe_t*, uv_os_fd_t file);
int uv_pipe_bind(uv_pipe_t* handle, const char* name);
void uv_pipe_connect(uv_connect_t* req, uv_pipe_t* handle, const char* name, uv_connect_cb cb);

/* ---- tty ----------------------------------------------------------------- */
typedef struct uv_tty_s { void* data; uv_loop_t* loop; ...; } uv_tty_t;
int uv_tty_init(uv_loop_t*, uv_tty_t*, uv_os_fd_t fd, int readable);
uv_handle_type uv_guess_handle(uv_os_fd_t file);

/* ---- udp ----------------------------------------------------------------- */
typedef struct uv_udp_s { void* data; uv_loop_t* loop; size_t send_queue_size; size_t send_queue_count; ...; } uv_udp_t;
typedef struct uv_udp_send_s { void* data; ...; } uv_udp_send_t;
typedef void (*uv_udp_send_cb)(uv_udp_send_t* req, int status);
typedef void (*uv_udp_recv_cb)(uv_udp_t* handle, ssize_t nread, const uv_buf_t* buf, const struct sockaddr* addr, unsigned flags);
#define UV_UDP_PARTIAL ...
int uv_udp_init(uv_loop_t*, uv_udp_t* handle);
int uv_udp_open(uv_udp_t* handle, uv_os_sock_t sock);
int uv_udp_send(uv_udp_send_t* req, uv_udp_t* handle, const uv_buf_t bufs[], unsigned int nbufs, const struct sockaddr* addr, uv_udp_send_cb send_cb);
int uv_udp_try_send(uv_udp_t* handle, const uv_buf_t bufs[], unsigned int nbufs, const struct sockaddr* addr);
int uv_udp_recv_start(uv_udp_t* handle, uv_alloc_cb alloc_cb, uv_udp_recv_cb recv_cb);
int uv_udp_recv_stop(uv_udp_t* handle);

/* ---- dns ----------------------------------------------------------------- */
typedef struct uv_getaddrinfo_s { void* data; uv_loop_t* loop; struct addrinfo* addrinfo; ...; } uv_getaddrinfo_t;
typedef void (*uv_getaddrinfo_cb)(uv_getaddrinfo_t* req, int status, struct addrinfo* res);
int uv_getaddrinfo(uv_loop_t* loop, uv_getaddrinfo_t* req, uv_getaddrinfo_cb getaddrinfo_cb, const char* node, const char* service, const struct addrinfo* hints);
void uv_freeaddrinfo(struct addrinfo* ai);
typedef struct uv_getnameinfo_s { void* data; uv_loop_t* loop; ...; } uv_getnameinfo_t;
typedef void (*uv_getnameinfo_cb)(uv_getnameinfo_t* req, int status, const char* hostname, const char* service);
int uv_getnameinfo(uv_loop_t* loop, uv_getnameinfo_t* req, uv_getnameinfo_cb getnameinfo_cb, const struct sockaddr* addr, int flags);

/* ---- misc ---------------------------------------------------------------- */
uint64_t uv_hrtime(void);
int uv_ip4_addr(const char* ip, int port, struct sockaddr_in* addr);
int uv_ip6_addr(const char* ip, int port, struct sockaddr_in6* addr);
int uv_ip4_name(const struct sockaddr_in* src, char* dst, size_t size);
int uv_ip6_name(const struct sockaddr_in6* src, char* dst, size_t size);
