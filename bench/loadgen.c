/* The request/response loop of bench/client.py in C, compiled on first use
 * with cffi (see client.py): with it the load client spends almost no user
 * CPU per request, so the server, not the client, sets the rate even for the
 * fastest loop.  Python sets up and checks the connections; this only sends
 * the prebuilt request on each connection, counts the response bytes, and
 * sends the next request once a whole response has arrived.
 *
 * Linux only (epoll).  Nothing here knows the workloads. */

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>

#include "lg_hist.h"

typedef struct {
    int fd;
    size_t sent;    /* bytes of the current request sent */
    size_t got;     /* bytes of the current response received */
    int busy;       /* a request is in flight */
    int want_out;   /* EPOLLOUT is armed */
    int64_t t0;     /* when the current request was started (ns), for hist */
} lg_conn;

static double lg__now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static char lg__sink[1 << 20];

/* Send (the rest of) the current request; arm EPOLLOUT if the kernel did not
 * take it all.  0 or -errno. */
static int lg__send(int epfd, lg_conn* c, const char* req, size_t req_len) {
    while (c->sent < req_len) {
        ssize_t n = send(c->fd, req + c->sent, req_len - c->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                return -errno;
            if (!c->want_out) {
                struct epoll_event ev;
                ev.events = EPOLLIN | EPOLLOUT;
                ev.data.ptr = c;
                if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
                    return -errno;
                c->want_out = 1;
            }
            return 0;
        }
        c->sent += (size_t)n;
    }
    if (c->want_out) {
        struct epoll_event ev;
        ev.events = EPOLLIN;
        ev.data.ptr = c;
        if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
            return -errno;
        c->want_out = 0;
    }
    return 0;
}

int lg_setup(int epfd, lg_conn* conns, int n) {
    for (int i = 0; i < n; i++) {
        struct epoll_event ev;
        ev.events = EPOLLIN;
        ev.data.ptr = &conns[i];
        conns[i].sent = conns[i].got = 0;
        conns[i].busy = conns[i].want_out = 0;
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, conns[i].fd, &ev) < 0)
            return -errno;
    }
    return 0;
}

/* Run for `seconds` (or, with resend == 0, until no request is in flight or
 * `seconds` passed).  While resend != 0 every idle connection gets a new
 * request.  Every `slice` seconds the time and the number of responses so far
 * are stored into slice_t/slice_n (up to max_slices; *nslices says how many).
 * Returns the number of complete responses, or -errno; -EPROTO for a response
 * longer than resp_len, -ECONNRESET for a connection the server closed,
 * -ETIMEDOUT if requests were still in flight at the end of a drain.
 * With hist != NULL (LG_HIST_BUCKETS counters) every response adds its round
 * trip, from the start of its request's send() to the recv() that completed
 * it, to hist (lg_hist.h): one clock_gettime() per request. */
long long lg_run(int epfd, lg_conn* conns, int n, const char* req, size_t req_len,
                 size_t resp_len, double seconds, int resend, double slice,
                 double* slice_t, long long* slice_n, int max_slices, int* nslices,
                 long long* hist) {
    struct epoll_event events[256];
    long long count = 0;
    double start = lg__now(), end = start + seconds, next_slice = start + slice;
    int busy = 0, rc;
    *nslices = 0;
    if (max_slices > 0) {
        slice_t[0] = start;
        slice_n[0] = 0;
        *nslices = 1;
    }
    for (int i = 0; i < n; i++) {
        if (!conns[i].busy && resend) {
            conns[i].busy = 1;
            conns[i].sent = conns[i].got = 0;
            conns[i].t0 = lg_hist_now_ns();
            if ((rc = lg__send(epfd, &conns[i], req, req_len)) < 0)
                return rc;
        }
        busy += conns[i].busy;
    }
    while (busy) {
        double now = lg__now();
        if (now >= next_slice && *nslices < max_slices) {
            slice_t[*nslices] = now;
            slice_n[*nslices] = count;
            (*nslices)++;
            next_slice = now + slice;
        }
        if (now >= end)
            break;
        int k = epoll_wait(epfd, events, 256, 100);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        for (int j = 0; j < k; j++) {
            lg_conn* c = (lg_conn*)events[j].data.ptr;
            if (events[j].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                ssize_t m = recv(c->fd, lg__sink, sizeof(lg__sink), 0);
                if (m < 0) {
                    if (errno == EAGAIN || errno == EINTR)
                        continue;
                    return -errno;
                }
                if (m == 0)
                    return -ECONNRESET;
                c->got += (size_t)m;
                if (c->got < resp_len)
                    continue;
                if (c->got > resp_len || c->sent < req_len)
                    return -EPROTO;
                count++;
                lg_hist_record(hist, &c->t0);
                if (resend) {
                    c->sent = c->got = 0;
                    if ((rc = lg__send(epfd, c, req, req_len)) < 0)
                        return rc;
                } else {
                    c->busy = 0;
                    busy--;
                }
            } else if (events[j].events & EPOLLOUT) {
                if ((rc = lg__send(epfd, c, req, req_len)) < 0)
                    return rc;
            }
        }
    }
    if (*nslices < max_slices) {
        slice_t[*nslices] = lg__now();
        slice_n[*nslices] = count;
        (*nslices)++;
    }
    if (!resend && busy)
        return -ETIMEDOUT;
    return count;
}

/* lg_hist_bucket for client.py's tests. */
int lg_hist_bucket_of(long long ns) {
    return lg_hist_bucket(ns);
}
