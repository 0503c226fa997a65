/* faultinject.c - an LD_PRELOAD library that makes chosen libc calls fail
 * or stall, for tests of the error paths loopback never takes.
 *
 * The full specification is the docstring of tests/faults.py.  In short:
 * rules come from the FAULTINJECT environment variable at load time, and
 * faultinject_set() replaces them at run time (callable through ctypes):
 *
 *     rule  := names ":" field (":" field)*
 *     names := name ("|" name)*        e.g. write|writev|send
 *     field := ERRNO | EAI_CODE | COUNT | SKIP | count=K | skip=N
 *            | delay=MS | short=N | fd=F | host=H | any
 *     rules := rule ((";" | ",") rule)*
 *
 * A rule matches a call of one of its names on a socket (S_ISSOCK; "any"
 * drops that check), on fd F if given.  It lets the first N matching calls
 * through (skip), then acts on the next K (count, default 1, -1 = forever):
 * sleeps MS milliseconds if delay is given, then fails with ERRNO / the EAI
 * code, or (short=N) passes at most N bytes to the real call, or else makes
 * the real call.  Only libc, no Python; thread-safe (one mutex around the
 * rule table; the sleep and the real call happen outside it).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_RULES 32
#define MAX_NAMES 12

enum { F_WRITE, F_WRITEV, F_SEND, F_SENDTO, F_SENDMSG, F_SENDMMSG,
       F_READ, F_READV, F_RECV, F_RECVFROM, F_RECVMSG, F_RECVMMSG,
       F_ACCEPT, F_ACCEPT4, F_CONNECT, F_GETADDRINFO, F_COUNT };

static const char *const func_names[F_COUNT] = {
    "write", "writev", "send", "sendto", "sendmsg", "sendmmsg",
    "read", "readv", "recv", "recvfrom", "recvmsg", "recvmmsg",
    "accept", "accept4", "connect", "getaddrinfo",
};

struct rule {
    unsigned funcs;   /* bit mask of F_* */
    int err;          /* errno to fail with, or 0 */
    int eai;          /* getaddrinfo code to fail with, or 0 */
    long count;       /* calls still to act on; -1 = forever */
    long skip;        /* matching calls still to let through */
    long delay_ms;
    long short_len;   /* -1 = no cap */
    int fd;           /* -1 = any fd */
    int any;          /* also on non-sockets */
    char host[128];   /* getaddrinfo node to match; "" = any */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct rule rules[MAX_RULES];
static int nrules;
static long fired[F_COUNT];

struct code { const char *name; int value; };

static const struct code errnos[] = {
    {"EAGAIN", EAGAIN}, {"EWOULDBLOCK", EWOULDBLOCK}, {"EINTR", EINTR},
    {"ECONNRESET", ECONNRESET}, {"ENOBUFS", ENOBUFS}, {"EPIPE", EPIPE},
    {"EMFILE", EMFILE}, {"ENFILE", ENFILE}, {"ECONNABORTED", ECONNABORTED},
    {"ECONNREFUSED", ECONNREFUSED}, {"ETIMEDOUT", ETIMEDOUT}, {"EIO", EIO},
    {"ENOMEM", ENOMEM}, {"EHOSTUNREACH", EHOSTUNREACH},
    {"ENETUNREACH", ENETUNREACH}, {"EADDRINUSE", EADDRINUSE},
    {"EADDRNOTAVAIL", EADDRNOTAVAIL}, {"EACCES", EACCES}, {"EPERM", EPERM},
    {"EINVAL", EINVAL}, {"EBADF", EBADF}, {"ENOTCONN", ENOTCONN},
    {"EPROTO", EPROTO}, {"ENOSPC", ENOSPC}, {"EMSGSIZE", EMSGSIZE},
    {NULL, 0},
};

static const struct code eais[] = {
    {"EAI_AGAIN", EAI_AGAIN}, {"EAI_FAIL", EAI_FAIL}, {"EAI_NONAME", EAI_NONAME},
    {"EAI_MEMORY", EAI_MEMORY}, {"EAI_SYSTEM", EAI_SYSTEM},
    {"EAI_FAMILY", EAI_FAMILY}, {"EAI_SERVICE", EAI_SERVICE},
    {"EAI_SOCKTYPE", EAI_SOCKTYPE}, {"EAI_BADFLAGS", EAI_BADFLAGS},
#ifdef EAI_NODATA
    {"EAI_NODATA", EAI_NODATA},
#endif
#ifdef EAI_ADDRFAMILY
    {"EAI_ADDRFAMILY", EAI_ADDRFAMILY},
#endif
    {NULL, 0},
};

static int lookup(const struct code *table, const char *name, int *out) {
    for (; table->name != NULL; table++) {
        if (strcmp(table->name, name) == 0) {
            *out = table->value;
            return 0;
        }
    }
    return -1;
}

static int parse_long(const char *s, long *out) {
    char *end;
    if (*s == '\0')
        return -1;
    errno = 0;
    *out = strtol(s, &end, 10);
    return (errno != 0 || *end != '\0') ? -1 : 0;
}

/* The F_* mask for "write|send", with the aliases "out" and "in". */
static int parse_names(char *s, unsigned *mask) {
    char *save = NULL;
    char *tok;
    int i;
    *mask = 0;
    for (tok = strtok_r(s, "|", &save); tok; tok = strtok_r(NULL, "|", &save)) {
        if (strcmp(tok, "out") == 0) {
            *mask |= 1u << F_WRITE | 1u << F_WRITEV | 1u << F_SEND | 1u << F_SENDTO
                   | 1u << F_SENDMSG | 1u << F_SENDMMSG;
            continue;
        }
        if (strcmp(tok, "in") == 0) {
            *mask |= 1u << F_READ | 1u << F_READV | 1u << F_RECV | 1u << F_RECVFROM
                   | 1u << F_RECVMSG | 1u << F_RECVMMSG;
            continue;
        }
        for (i = 0; i < F_COUNT; i++) {
            if (strcmp(tok, func_names[i]) == 0)
                break;
        }
        if (i == F_COUNT)
            return -1;
        *mask |= 1u << i;
    }
    return *mask ? 0 : -1;
}

static int parse_rule(char *s, struct rule *r) {
    char *save = NULL;
    char *tok;
    long v;
    int positional = 0;

    memset(r, 0, sizeof(*r));
    r->count = 1;
    r->short_len = -1;
    r->fd = -1;
    tok = strtok_r(s, ":", &save);
    if (tok == NULL || parse_names(tok, &r->funcs) < 0)
        return -1;
    while ((tok = strtok_r(NULL, ":", &save)) != NULL) {
        if (strncmp(tok, "EAI_", 4) == 0) {
            if (lookup(eais, tok, &r->eai) < 0)
                return -1;
        } else if (tok[0] == 'E') {
            if (lookup(errnos, tok, &r->err) < 0)
                return -1;
        } else if (strcmp(tok, "any") == 0) {
            r->any = 1;
        } else if (strcmp(tok, "*") == 0 && positional == 0) {
            r->count = -1;
            positional++;
        } else if (strncmp(tok, "count=", 6) == 0) {
            if (parse_long(tok + 6, &r->count) < 0)
                return -1;
        } else if (strncmp(tok, "skip=", 5) == 0) {
            if (parse_long(tok + 5, &r->skip) < 0 || r->skip < 0)
                return -1;
        } else if (strncmp(tok, "delay=", 6) == 0) {
            if (parse_long(tok + 6, &r->delay_ms) < 0 || r->delay_ms < 0)
                return -1;
        } else if (strncmp(tok, "short=", 6) == 0) {
            if (parse_long(tok + 6, &r->short_len) < 0 || r->short_len < 0)
                return -1;
        } else if (strncmp(tok, "fd=", 3) == 0) {
            if (parse_long(tok + 3, &v) < 0)
                return -1;
            r->fd = (int)v;
        } else if (strncmp(tok, "host=", 5) == 0) {
            if (strlen(tok + 5) >= sizeof(r->host))
                return -1;
            strcpy(r->host, tok + 5);
        } else if (parse_long(tok, &v) == 0 && positional < 2) {
            if (positional++ == 0)
                r->count = v;
            else if (v >= 0)
                r->skip = v;
            else
                return -1;
        } else {
            return -1;
        }
    }
    if (r->err == 0 && r->eai == 0 && r->delay_ms == 0 && r->short_len < 0)
        return -1;   /* a rule that does nothing is a typo */
    if (r->count < -1)
        return -1;
    return 0;
}

/* Replace every rule with those in ``spec`` (NULL or "" clears them) and
 * zero the fired counters.  Returns 0, or -1 (rules unchanged) if ``spec``
 * does not parse. */
int faultinject_set(const char *spec) {
    struct rule parsed[MAX_RULES];
    int n = 0;
    char *copy, *save = NULL, *tok;

    if (spec != NULL && *spec != '\0') {
        copy = strdup(spec);
        if (copy == NULL)
            return -1;
        for (tok = strtok_r(copy, ";,", &save); tok; tok = strtok_r(NULL, ";,", &save)) {
            if (*tok == ' ')
                while (*tok == ' ')
                    tok++;
            if (*tok == '\0')
                continue;
            if (n == MAX_RULES || parse_rule(tok, &parsed[n]) < 0) {
                free(copy);
                return -1;
            }
            n++;
        }
        free(copy);
    }
    pthread_mutex_lock(&lock);
    memcpy(rules, parsed, sizeof(parsed[0]) * (size_t)n);
    nrules = n;
    memset(fired, 0, sizeof(fired));
    pthread_mutex_unlock(&lock);
    return 0;
}

/* How many calls of ``name`` (e.g. "write") a rule acted on since the last
 * faultinject_set(); -1 for an unknown name. */
long faultinject_fired(const char *name) {
    long n = -1;
    int i;
    for (i = 0; i < F_COUNT; i++) {
        if (strcmp(name, func_names[i]) == 0) {
            pthread_mutex_lock(&lock);
            n = fired[i];
            pthread_mutex_unlock(&lock);
        }
    }
    return n;
}

__attribute__((constructor)) static void faultinject_init(void) {
    const char *spec = getenv("FAULTINJECT");
    if (spec != NULL && faultinject_set(spec) < 0) {
        static const char msg[] = "faultinject: cannot parse FAULTINJECT\n";
        ssize_t ignored = write(2, msg, sizeof(msg) - 1);
        (void)ignored;
        abort();
    }
}

/* What a call is to do, decided once under the lock. */
struct action {
    int err, eai;
    long delay_ms, short_len;
};

static int is_socket(int fd) {
    struct stat st;
    int saved = errno;
    int r = fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
    errno = saved;
    return r;
}

/* Fills ``a`` and returns 1 if a rule acts on this call (0: pass it on). */
static int decide(int func, int fd, const char *host, struct action *a) {
    int i, sock = -1, hit = 0;
    struct rule *r;

    if (__atomic_load_n(&nrules, __ATOMIC_RELAXED) == 0)
        return 0;   /* the common case: no lock, no fstat */
    pthread_mutex_lock(&lock);
    for (i = 0; i < nrules; i++) {
        r = &rules[i];
        if (!(r->funcs & (1u << func)) || r->count == 0)
            continue;
        if (r->fd >= 0 && r->fd != fd)
            continue;
        if (func != F_GETADDRINFO && !r->any) {
            if (sock < 0)
                sock = is_socket(fd);
            if (!sock)
                continue;
        }
        if (r->host[0] && (host == NULL || strcmp(r->host, host) != 0))
            continue;
        if (r->skip > 0) {
            r->skip--;
            continue;
        }
        if (r->count > 0)
            r->count--;
        a->err = r->err;
        a->eai = r->eai;
        a->delay_ms = r->delay_ms;
        a->short_len = r->short_len;
        fired[func]++;
        hit = 1;
        break;
    }
    pthread_mutex_unlock(&lock);
    if (hit && a->delay_ms > 0) {
        struct timespec ts = {a->delay_ms / 1000, (a->delay_ms % 1000) * 1000000L};
        int saved = errno;
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
        errno = saved;
    }
    return hit;
}

#define REAL(type, name, args)                                              \
    static type (*real_##name) args;                                        \
    static type (*get_##name(void)) args {                                  \
        type (*f) args = __atomic_load_n(&real_##name, __ATOMIC_ACQUIRE);   \
        if (f == NULL) {                                                    \
            f = (type (*) args)dlsym(RTLD_NEXT, #name);                     \
            __atomic_store_n(&real_##name, f, __ATOMIC_RELEASE);            \
        }                                                                   \
        return f;                                                           \
    }

REAL(ssize_t, write, (int, const void *, size_t))
REAL(ssize_t, writev, (int, const struct iovec *, int))
REAL(ssize_t, send, (int, const void *, size_t, int))
REAL(ssize_t, sendto, (int, const void *, size_t, int, const struct sockaddr *, socklen_t))
REAL(ssize_t, sendmsg, (int, const struct msghdr *, int))
REAL(int, sendmmsg, (int, struct mmsghdr *, unsigned int, int))
REAL(ssize_t, read, (int, void *, size_t))
REAL(ssize_t, readv, (int, const struct iovec *, int))
REAL(ssize_t, recv, (int, void *, size_t, int))
REAL(ssize_t, recvfrom, (int, void *, size_t, int, struct sockaddr *, socklen_t *))
REAL(ssize_t, recvmsg, (int, struct msghdr *, int))
REAL(int, recvmmsg, (int, struct mmsghdr *, unsigned int, int, struct timespec *))
REAL(int, accept, (int, struct sockaddr *, socklen_t *))
REAL(int, accept4, (int, struct sockaddr *, socklen_t *, int))
REAL(int, connect, (int, const struct sockaddr *, socklen_t))
REAL(int, getaddrinfo, (const char *, const char *, const struct addrinfo *,
                        struct addrinfo **))

/* Fail with the rule's errno, if it has one. */
#define FAIL_IF_ERR(a)          \
    if ((a).err) {              \
        errno = (a).err;        \
        return -1;              \
    }

static size_t cap(size_t len, const struct action *a) {
    return (a->short_len >= 0 && (size_t)a->short_len < len) ? (size_t)a->short_len : len;
}

/* A copy of ``iov`` holding at most short_len bytes in all; returns the
 * new count.  ``out`` has room for ``n`` entries. */
static int cap_iov(const struct iovec *iov, int n, struct iovec *out, long short_len) {
    size_t left = (size_t)short_len;
    int i;
    for (i = 0; i < n; i++) {
        out[i] = iov[i];
        if (out[i].iov_len >= left) {
            out[i].iov_len = left;
            return i + 1;
        }
        left -= out[i].iov_len;
    }
    return n;
}

ssize_t write(int fd, const void *buf, size_t len) {
    struct action a;
    if (decide(F_WRITE, fd, NULL, &a)) {
        FAIL_IF_ERR(a)
        len = cap(len, &a);
    }
    return get_write()(fd, buf, len);
}

ssize_t send(int fd, const void *buf, size_t len, int flags) {
    struct action a;
    if (decide(F_SEND, fd, NULL, &a)) {
        FAIL_IF_ERR(a)
        len = cap(len, &a);
    }
    return get_send()(fd, buf, len, flags);
}

ssize_t sendto(int fd, const void *buf, size_t len, int flags,
               const struct sockaddr *addr, socklen_t addrlen) {
    struct action a;
    if (decide(F_SENDTO, fd, NULL, &a)) {
        FAIL_IF_ERR(a)
        len = cap(len, &a);
    }
    return get_sendto()(fd, buf, len, flags, addr, addrlen);
}

ssize_t writev(int fd, const struct iovec *iov, int n) {
    struct action a;
    if (decide(F_WRITEV, fd, NULL, &a)) {
        FAIL_IF_ERR(a)
        if (a.short_len >= 0 && n > 0 && n <= 1024) {
            struct iovec copy[n];
            return get_writev()(fd, copy, cap_iov(iov, n, copy, a.short_len));
        }
    }
    return get_writev()(fd, iov, n);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags) {
    struct action a;
    if (decide(F_SENDMSG, fd, NULL, &a)) {
        FAIL_IF_ERR(a)
        if (a.short_len >= 0 && msg->msg_iovlen > 0 && msg->msg_iovlen <= 1024) {
            struct iovec copy[msg->msg_iovlen];
            struct msghdr m = *msg;
            m.msg_iov = copy;
            m.msg_iovlen = (size_t)cap_iov(msg->msg_iov, (int)msg->msg_iovlen, copy,
                                           a.short_len);
            return get_sendmsg()(fd, &m, flags);
        }
    }
    return get_sendmsg()(fd, msg, flags);
}

int sendmmsg(int fd, struct mmsghdr *msgs, unsigned int n, int flags) {
    struct action a;
    if (decide(F_SENDMMSG, fd, NULL, &a)) {
        FAIL_IF_ERR(a)
    }
    return get_sendmmsg()(fd, msgs, n, flags);
}

ssize_t read(int fd, void *buf, size_t len) {
    struct action a;
    if (decide(F_READ, fd, NULL, &a)) {
        FAIL_IF_ERR(a)
        len = cap(len, &a);
    }
    return get_read()(fd, buf, len);
}

ssize_t readv(int fd, const struct iovec *iov, int n) {
    struct action a;
    if (decide(F_READV, fd, NULL, &a)) {
        FAIL_IF_ERR(a)
    }
    return get_readv()(fd, iov, n);
}

ssize_t recv(int fd, void *buf, size_t len, int flags) {
    struct action a;
    if (decide(F_RECV, fd, NULL, &a)) {
        FAIL_IF_ERR(a)
        len = cap(len, &a);
    }
    return get_recv()(fd, buf, len, flags);
}

ssize_t recvfrom(int fd, void *buf, size_t len, int flags,
                 struct sockaddr *addr, socklen_t *addrlen) {
    struct action a;
    if (decide(F_RECVFROM, fd, NULL, &a)) {
        FAIL_IF_ERR(a)
        len = cap(len, &a);
    }
    return get_recvfrom()(fd, buf, len, flags, addr, addrlen);
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags) {
    struct action a;
    if (decide(F_RECVMSG, fd, NULL, &a)) {
        FAIL_IF_ERR(a)
    }
    return get_recvmsg()(fd, msg, flags);
}

int recvmmsg(int fd, struct mmsghdr *msgs, unsigned int n, int flags,
             struct timespec *timeout) {
    struct action a;
    if (decide(F_RECVMMSG, fd, NULL, &a)) {
        FAIL_IF_ERR(a)
    }
    return get_recvmmsg()(fd, msgs, n, flags, timeout);
}

int accept(int fd, struct sockaddr *addr, socklen_t *addrlen) {
    struct action a;
    if (decide(F_ACCEPT, fd, NULL, &a)) {
        FAIL_IF_ERR(a)
    }
    return get_accept()(fd, addr, addrlen);
}

int accept4(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags) {
    struct action a;
    if (decide(F_ACCEPT4, fd, NULL, &a)) {
        FAIL_IF_ERR(a)
    }
    return get_accept4()(fd, addr, addrlen, flags);
}

int connect(int fd, const struct sockaddr *addr, socklen_t addrlen) {
    struct action a;
    if (decide(F_CONNECT, fd, NULL, &a)) {
        FAIL_IF_ERR(a)
    }
    return get_connect()(fd, addr, addrlen);
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res) {
    struct action a;
    if (decide(F_GETADDRINFO, -1, node, &a)) {
        if (a.eai != 0 && a.eai != EAI_SYSTEM)
            return a.eai;
        if (a.eai == EAI_SYSTEM || a.err != 0) {   /* an errno: EAI_SYSTEM with it */
            errno = a.err ? a.err : EIO;
            return EAI_SYSTEM;
        }
    }
    return get_getaddrinfo()(node, service, hints, res);
}
