/* The TLS request/response loop of bench/client.py (mode ``tls``), compiled
 * on first use with cffi against OpenSSL (see client.py; without OpenSSL's
 * headers it does not build and the Python client is used instead).
 *
 * The client has to cost less than the server, but a TLS echo costs both
 * ends the same crypto: the server decrypts the request and encrypts the
 * response, the client encrypts the request and decrypts the response.  At
 * 100 KiB that crypto is most of either side's CPU time, and a client doing
 * it all through OpenSSL's SSL_read/SSL_write is as busy as the fastest
 * server.  So OpenSSL (libssl) does the TLS 1.3 handshake, and then this
 * file does the record layer itself with OpenSSL's AEAD ciphers (libcrypto),
 * from the traffic secrets the handshake exported through the key-log
 * callback (RFC 8446, 7.1-7.3 and 5.2-5.3):
 *
 *  - requests are sealed into 16 KiB records and sent with one send();
 *  - during the timed request loop (lgt_run) the responses are counted by
 *    their record headers, not decrypted, as loadgen.c counts the bytes of a
 *    plain response without looking at them.  The record sequence numbers
 *    are kept, so:
 *  - the checked exchanges before and after (lgt_write_all / lgt_read,
 *    blocking) decrypt and authenticate every record, which fails if a
 *    record went missing, came twice or changed in between, and Python
 *    compares the plaintext byte for byte.
 *
 * Assumed of the server (asyncio's and uvloop's TLS both do so), checked
 * where cheap: after the handshake only application data, session tickets
 * and alerts; no record padding, so a record's plaintext is its length
 * less 17 (tag and content type); the response to a request ends at a
 * record boundary with nothing after it.
 *
 * Linux only (epoll).  Nothing here knows the workloads. */

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include "lg_hist.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>

#if OPENSSL_VERSION_NUMBER < 0x30000000L   /* OpenSSL 1.1.1 */
#define EVP_CIPHER_get_key_length EVP_CIPHER_key_length
#define EVP_CIPHER_get_mode EVP_CIPHER_mode
#endif

#define LGT_MAX_PLAIN 16384
#define LGT_TAG 16
#define LGT_OVERHEAD (5 + 1 + LGT_TAG) /* header, content type, tag */
#define LGT_MAX_RECORD (LGT_MAX_PLAIN + 256)

typedef struct {
    int fd;
    SSL* ssl;
    /* record protection, from the traffic secrets */
    EVP_CIPHER_CTX* enc;
    EVP_CIPHER_CTX* dec;
    unsigned char wiv[12], riv[12];
    uint64_t wseq, rseq;
    unsigned char csecret[EVP_MAX_MD_SIZE], ssecret[EVP_MAX_MD_SIZE];
    size_t csecret_len, ssecret_len;
    /* sealed bytes waiting to be sent: out[out_off:out_len] */
    unsigned char* out;
    size_t out_cap, out_len, out_off;
    /* lgt_run: the response being counted */
    size_t got;          /* plaintext bytes of the current response */
    int busy;            /* a request is in flight */
    int want_out;        /* EPOLLOUT is armed */
    int64_t t0;          /* when the current request was started (ns), for hist */
    unsigned char hdr[5];
    int hdr_have;        /* bytes of a record header seen */
    size_t body_left;    /* bytes of the current record still to come */
    size_t body_len;
    /* lgt_read: a record read whole and opened in place, its plaintext at
     * rec[5:plain_len], rec[plain_off:plain_len] not yet returned */
    unsigned char* rec;
    size_t plain_off, plain_len;
} lgt_conn;

static char lgt__err[256];
static unsigned char lgt__sink[1 << 20];

static double lgt__now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int lgt__error(int code, const char* what) {
    snprintf(lgt__err, sizeof(lgt__err), "%s", what);
    return code;
}

/* OpenSSL's error queue (or errno) into lgt_last_error(); -EPROTO for an
 * SSL-level failure, -errno for a system call's. */
static int lgt__ssl_fail(const char* what, SSL* ssl, int ret) {
    int e = ssl ? SSL_get_error(ssl, ret) : SSL_ERROR_SSL;
    unsigned long code = ERR_get_error();
    int saved = errno;
    if (code) {
        char buf[200];
        ERR_error_string_n(code, buf, sizeof(buf));
        snprintf(lgt__err, sizeof(lgt__err), "%s: %s", what, buf);
        ERR_clear_error();
        return -EPROTO;
    }
    if (e == SSL_ERROR_SYSCALL && saved) {
        snprintf(lgt__err, sizeof(lgt__err), "%s: %s", what, strerror(saved));
        return -saved;
    }
    snprintf(lgt__err, sizeof(lgt__err), "%s: the server closed the connection", what);
    return -ECONNRESET;
}

const char* lgt_last_error(void) { return lgt__err; }

const char* lgt_openssl_version(void) { return OpenSSL_version(OPENSSL_VERSION); }

/* "TLSv1.3 TLS_AES_256_GCM_SHA384": what a connection negotiated. */
const char* lgt_describe(lgt_conn* c) {
    static char buf[128];
    snprintf(buf, sizeof(buf), "%s %s", SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl));
    return buf;
}

static int lgt__unhex(const char* hex, size_t hexlen, unsigned char* out, size_t cap) {
    if (hexlen % 2 || hexlen / 2 > cap)
        return -1;
    for (size_t i = 0; i < hexlen / 2; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (unsigned char)v;
    }
    return (int)(hexlen / 2);
}

/* The key-log callback: keeps the application traffic secrets of the
 * connection being set up ("CLIENT_TRAFFIC_SECRET_0 <random> <secret>"). */
static void lgt__keylog(const SSL* ssl, const char* line) {
    lgt_conn* c = (lgt_conn*)SSL_get_app_data(ssl);
    const char* secret = strrchr(line, ' ');
    int n;
    if (!c || !secret)
        return;
    secret++;
    if (!strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24)) {
        n = lgt__unhex(secret, strlen(secret), c->csecret, sizeof(c->csecret));
        c->csecret_len = n > 0 ? (size_t)n : 0;
    } else if (!strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24)) {
        n = lgt__unhex(secret, strlen(secret), c->ssecret, sizeof(c->ssecret));
        c->ssecret_len = n > 0 ? (size_t)n : 0;
    }
}

/* HKDF-Expand-Label(secret, label, "", len), len <= the hash's size (one
 * HMAC block).  0 or -1. */
static int lgt__expand_label(const EVP_MD* md, const unsigned char* secret, size_t secret_len,
                             const char* label, unsigned char* out, size_t len) {
    unsigned char info[2 + 1 + 255 + 1 + 1], t[EVP_MAX_MD_SIZE];
    unsigned int tlen = 0;
    size_t llen = strlen(label), n = 0;
    if (6 + llen > 255)
        return -1;
    info[n++] = (unsigned char)(len >> 8);
    info[n++] = (unsigned char)len;
    info[n++] = (unsigned char)(6 + llen);
    memcpy(info + n, "tls13 ", 6);
    n += 6;
    memcpy(info + n, label, llen);
    n += llen;
    info[n++] = 0;   /* empty context */
    info[n++] = 1;   /* T(1) */
    if (!HMAC(md, secret, (int)secret_len, info, n, t, &tlen) || len > tlen)
        return -1;
    memcpy(out, t, len);
    return 0;
}

static EVP_CIPHER_CTX* lgt__aead(const EVP_CIPHER* cipher, const EVP_MD* md,
                                 const unsigned char* secret, size_t secret_len,
                                 unsigned char* iv, int encrypt) {
    unsigned char key[EVP_MAX_KEY_LENGTH];
    int keylen = EVP_CIPHER_get_key_length(cipher);
    EVP_CIPHER_CTX* ctx;
    if (keylen > (int)sizeof(key)
            || lgt__expand_label(md, secret, secret_len, "key", key, (size_t)keylen) < 0
            || lgt__expand_label(md, secret, secret_len, "iv", iv, 12) < 0)
        return NULL;
    if (!(ctx = EVP_CIPHER_CTX_new()))
        return NULL;
    if (EVP_CipherInit_ex(ctx, cipher, NULL, NULL, NULL, encrypt) != 1
            || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, 12, NULL) != 1
            || EVP_CipherInit_ex(ctx, NULL, NULL, key, NULL, encrypt) != 1) {
        EVP_CIPHER_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static void lgt__nonce(const unsigned char* iv, uint64_t seq, unsigned char* nonce) {
    memcpy(nonce, iv, 12);
    for (int i = 0; i < 8; i++)
        nonce[11 - i] ^= (unsigned char)(seq >> (8 * i));
}

/* Seal `len` (<= 16 KiB) bytes of content `type` as one record at out. */
static int lgt__seal(lgt_conn* c, unsigned char type, const unsigned char* in, size_t len,
                     unsigned char* out) {
    unsigned char nonce[12];
    size_t body = len + 1 + LGT_TAG;
    int n;
    out[0] = 23;   /* outer type: application_data */
    out[1] = 3;
    out[2] = 3;
    out[3] = (unsigned char)(body >> 8);
    out[4] = (unsigned char)body;
    lgt__nonce(c->wiv, c->wseq++, nonce);
    if (EVP_EncryptInit_ex(c->enc, NULL, NULL, NULL, nonce) != 1
            || EVP_EncryptUpdate(c->enc, NULL, &n, out, 5) != 1
            || EVP_EncryptUpdate(c->enc, out + 5, &n, in, (int)len) != 1
            || EVP_EncryptUpdate(c->enc, out + 5 + len, &n, &type, 1) != 1
            || EVP_EncryptFinal_ex(c->enc, out + 5 + len + 1, &n) != 1
            || EVP_CIPHER_CTX_ctrl(c->enc, EVP_CTRL_AEAD_GET_TAG, LGT_TAG,
                                   out + 5 + len + 1) != 1)
        return lgt__error(-EPROTO, "encrypting a record failed");
    return 0;
}

/* Seal buf (any length) into records after whatever is still to be sent. */
static int lgt__queue(lgt_conn* c, unsigned char type, const char* buf, size_t len) {
    size_t records = len ? (len + LGT_MAX_PLAIN - 1) / LGT_MAX_PLAIN : 1;
    size_t need = c->out_len - c->out_off + len + records * LGT_OVERHEAD;
    int rc;
    if (c->out_off) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    if (need > c->out_cap) {
        unsigned char* p = realloc(c->out, need);
        if (!p)
            return lgt__error(-ENOMEM, "out of memory");
        c->out = p;
        c->out_cap = need;
    }
    do {
        size_t chunk = len < LGT_MAX_PLAIN ? len : LGT_MAX_PLAIN;
        if ((rc = lgt__seal(c, type, (const unsigned char*)buf, chunk, c->out + c->out_len)) < 0)
            return rc;
        c->out_len += chunk + LGT_OVERHEAD;
        buf += chunk;
        len -= chunk;
    } while (len);
    return 0;
}

/* Send what is queued: all of it (blocking socket) or until EAGAIN.  0 or -errno. */
static int lgt__flush(lgt_conn* c) {
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return 0;
            return lgt__error(-errno, strerror(errno));
        }
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    return 0;
}

/* A client context that trusts `cafile` (the server's self-signed
 * certificate), checks the host name and speaks TLS 1.3 only; NULL on error. */
void* lgt_ctx_new(const char* cafile) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        lgt__ssl_fail("SSL_CTX_new", NULL, 0);
        return NULL;
    }
    if (SSL_CTX_load_verify_locations(ctx, cafile, NULL) != 1
            || SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1) {
        lgt__ssl_fail("setting up the client context", NULL, 0);
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_keylog_callback(ctx, lgt__keylog);
    return ctx;
}

void lgt_ctx_free(void* ctx) { SSL_CTX_free((SSL_CTX*)ctx); }

static void lgt__timeout(int fd, int seconds) {
    struct timeval tv = {seconds, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* Free what lgt_connect set up (not the fd: Python closes it). */
void lgt_free(lgt_conn* c) {
    if (c->ssl)
        SSL_free(c->ssl);
    EVP_CIPHER_CTX_free(c->enc);
    EVP_CIPHER_CTX_free(c->dec);
    free(c->out);
    free(c->rec);
    memset(c, 0, sizeof(*c));
    c->fd = -1;
}

/* Blocking handshake on the connected (blocking) socket fd, then the record
 * layer's keys.  0 or -errno (lgt_last_error() says more).  Every blocking
 * call on the fd (here, lgt_write_all, lgt_read) gives up after 10 s
 * without progress: a server that stops answering fails the run instead of
 * hanging it. */
int lgt_connect(void* ctx, lgt_conn* c, int fd, const char* host) {
    const SSL_CIPHER* suite;
    const EVP_CIPHER* cipher;
    const EVP_MD* md;
    int ret;
    memset(c, 0, sizeof(*c));
    c->fd = fd;
    lgt__timeout(fd, 10);
    if (!(c->rec = malloc(LGT_MAX_RECORD)) || !(c->ssl = SSL_new((SSL_CTX*)ctx))) {
        lgt_free(c);
        return lgt__error(-ENOMEM, "out of memory");
    }
    /* No read-ahead (the default): OpenSSL reads no byte past the handshake. */
    if (SSL_set_fd(c->ssl, fd) != 1 || SSL_set_tlsext_host_name(c->ssl, host) != 1
            || SSL_set1_host(c->ssl, host) != 1 || SSL_set_app_data(c->ssl, c) != 1) {
        ret = lgt__ssl_fail("SSL setup", NULL, 0);
        lgt_free(c);
        return ret;
    }
    ERR_clear_error();
    errno = 0;
    if ((ret = SSL_connect(c->ssl)) != 1) {
        ret = lgt__ssl_fail("TLS handshake", c->ssl, ret);
        lgt_free(c);
        return ret;
    }
    suite = SSL_get_current_cipher(c->ssl);
    cipher = suite ? EVP_get_cipherbynid(SSL_CIPHER_get_cipher_nid(suite)) : NULL;
    md = suite ? SSL_CIPHER_get_handshake_digest(suite) : NULL;
    if (SSL_version(c->ssl) != TLS1_3_VERSION || !cipher || !md
            || EVP_CIPHER_get_mode(cipher) == EVP_CIPH_CCM_MODE) {
        lgt_free(c);
        return lgt__error(-EPROTO, "not TLS 1.3 with an AES-GCM or ChaCha20 suite");
    }
    if (!c->csecret_len || !c->ssecret_len || SSL_has_pending(c->ssl)) {
        lgt_free(c);
        return lgt__error(-EPROTO, "no traffic secrets from the handshake");
    }
    c->enc = lgt__aead(cipher, md, c->csecret, c->csecret_len, c->wiv, 1);
    c->dec = lgt__aead(cipher, md, c->ssecret, c->ssecret_len, c->riv, 0);
    if (!c->enc || !c->dec) {
        lgt_free(c);
        return lgt__error(-EPROTO, "deriving the record keys failed");
    }
    return 0;
}

/* Blocking: seal and send all of buf.  0 or -errno. */
int lgt_write_all(lgt_conn* c, const char* buf, size_t len) {
    int rc = lgt__queue(c, 23, buf, len);
    if (rc < 0)
        return rc;
    rc = lgt__flush(c);
    if (rc == 0 && c->out_len)
        return lgt__error(-ETIMEDOUT, "sending: timed out");
    return rc;
}

static int lgt__recv_exactly(lgt_conn* c, unsigned char* buf, size_t len) {
    while (len) {
        ssize_t n = recv(c->fd, buf, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return lgt__error(-ETIMEDOUT, "receiving: timed out");
            return lgt__error(-errno, strerror(errno));
        }
        if (n == 0)
            return lgt__error(-ECONNRESET, "the server closed the connection");
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Blocking: read one record whole and open it in place: its content type,
 * plaintext in c->rec[5:plain_len].  Type or -errno. */
static int lgt__read_record(lgt_conn* c) {
    unsigned char nonce[12];
    size_t len;
    int n, rc;
    if (c->hdr_have || c->body_left)
        return lgt__error(-EPROTO, "reading in the middle of a record");
    if ((rc = lgt__recv_exactly(c, c->rec, 5)) < 0)
        return rc;
    len = ((size_t)c->rec[3] << 8) | c->rec[4];
    if (c->rec[0] != 23 || len < 1 + LGT_TAG || len > LGT_MAX_RECORD - 5)
        return lgt__error(-EPROTO, "not an application_data record");
    if ((rc = lgt__recv_exactly(c, c->rec + 5, len)) < 0)
        return rc;
    lgt__nonce(c->riv, c->rseq++, nonce);
    len -= LGT_TAG;
    if (EVP_DecryptInit_ex(c->dec, NULL, NULL, NULL, nonce) != 1
            || EVP_DecryptUpdate(c->dec, NULL, &n, c->rec, 5) != 1
            || EVP_CIPHER_CTX_ctrl(c->dec, EVP_CTRL_AEAD_SET_TAG, LGT_TAG,
                                   c->rec + 5 + len) != 1
            || EVP_DecryptUpdate(c->dec, c->rec + 5, &n, c->rec + 5, (int)len) != 1
            || EVP_DecryptFinal_ex(c->dec, c->rec + 5 + len, &n) != 1)
        return lgt__error(-EPROTO, "a record did not authenticate (bad_record_mac)");
    while (len && !c->rec[5 + len - 1])
        len--;   /* padding */
    if (!len)
        return lgt__error(-EPROTO, "a record without a content type");
    c->plain_off = 5;
    c->plain_len = 5 + len - 1;
    return c->rec[5 + len - 1];
}

/* Blocking: up to len bytes of application data (at least 1; 0 once the
 * server sent close_notify).  Byte count or -errno. */
long long lgt_read(lgt_conn* c, char* buf, size_t len) {
    while (c->plain_off == c->plain_len) {
        int type = lgt__read_record(c);
        if (type < 0)
            return type;
        if (type == 21) {   /* alert */
            int close_notify = c->plain_len == 7 && c->rec[6] == 0;
            c->plain_off = c->plain_len = 0;
            if (close_notify)
                return 0;
            return lgt__error(-EPROTO, "the server sent an alert");
        }
        if (type == 22) {   /* post-handshake: session tickets */
            if (c->plain_len > 5 && c->rec[5] != 4)
                return lgt__error(-EPROTO, "a post-handshake message other than a ticket");
            c->plain_off = c->plain_len = 0;
        } else if (type != 23) {
            return lgt__error(-EPROTO, "unexpected record content type");
        }
    }
    if (len > c->plain_len - c->plain_off)
        len = c->plain_len - c->plain_off;
    memcpy(buf, c->rec + c->plain_off, len);
    c->plain_off += len;
    return (long long)len;
}

/* Send close_notify, wait (blocking, up to 2 s) for the server's, free
 * everything.  The fd stays open: Python closes it. */
void lgt_close(lgt_conn* c) {
    static const char alert[2] = {1, 0};   /* warning, close_notify */
    char buf[256];
    if (c->enc && lgt__queue(c, 21, alert, 2) == 0) {
        lgt__timeout(c->fd, 2);
        if (lgt__flush(c) == 0)
            while (lgt_read(c, buf, sizeof(buf)) > 0)
                ;
    }
    lgt_free(c);
}

static int lgt__arm(int epfd, lgt_conn* c) {
    struct epoll_event ev;
    int out = c->out_off < c->out_len;
    if (out == c->want_out)
        return 0;
    ev.events = out ? EPOLLIN | EPOLLOUT : EPOLLIN;
    ev.data.ptr = c;
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        return lgt__error(-errno, strerror(errno));
    c->want_out = out;
    return 0;
}

int lgt_setup(int epfd, lgt_conn** conns, int n) {
    for (int i = 0; i < n; i++) {
        struct epoll_event ev;
        ev.events = EPOLLIN;
        ev.data.ptr = conns[i];
        conns[i]->got = 0;
        conns[i]->busy = conns[i]->want_out = 0;
        if (conns[i]->plain_off != conns[i]->plain_len)
            return lgt__error(-EPROTO, "unread data before the request loop");
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, conns[i]->fd, &ev) < 0)
            return lgt__error(-errno, strerror(errno));
    }
    return 0;
}

/* Count the response records in `len` bytes just received, by their headers.
 * 1 when the response is complete, 0 if not yet, or -errno. */
static int lgt__count(lgt_conn* c, const unsigned char* p, size_t len, size_t resp_len) {
    while (len) {
        if (c->body_left) {
            size_t n = len < c->body_left ? len : c->body_left;
            p += n;
            len -= n;
            if ((c->body_left -= n))
                break;
            c->rseq++;
            c->got += c->body_len - 1 - LGT_TAG;
            if (c->got < resp_len)
                continue;
            if (c->got > resp_len || len)
                return lgt__error(-EPROTO, "response longer than expected");
            return 1;
        }
        c->hdr[c->hdr_have++] = *p++;
        len--;
        if (c->hdr_have < 5)
            continue;
        c->hdr_have = 0;
        c->body_len = c->body_left = ((size_t)c->hdr[3] << 8) | c->hdr[4];
        if (c->hdr[0] != 23 || c->body_len < 1 + LGT_TAG + 1 || c->body_len > LGT_MAX_RECORD - 5)
            return lgt__error(-EPROTO, "not an application_data record");
    }
    return 0;
}

/* Start a request: seal it and send what the socket takes. */
static int lgt__start(lgt_conn* c, const char* req, size_t req_len) {
    int rc;
    c->got = 0;
    if ((rc = lgt__queue(c, 23, req, req_len)) < 0)
        return rc;
    return lgt__flush(c);
}

/* As lg_run in loadgen.c: run for `seconds` (with resend == 0: until no
 * request is in flight, or `seconds` passed), slices of the response count
 * into slice_t/slice_n, round trips into hist if not NULL.  The count, or
 * -errno (lgt_last_error() says more). */
long long lgt_run(int epfd, lgt_conn** conns, int n, const char* req, size_t req_len,
                  size_t resp_len, double seconds, int resend, double slice,
                  double* slice_t, long long* slice_n, int max_slices, int* nslices,
                  long long* hist) {
    struct epoll_event events[256];
    long long count = 0;
    double start = lgt__now(), end = start + seconds, next_slice = start + slice;
    int busy = 0, rc;
    lgt__err[0] = 0;
    *nslices = 0;
    if (max_slices > 0) {
        slice_t[0] = start;
        slice_n[0] = 0;
        *nslices = 1;
    }
    for (int i = 0; i < n; i++) {
        lgt_conn* c = conns[i];
        if (!c->busy && resend) {
            c->busy = 1;
            c->t0 = lg_hist_now_ns();
            if ((rc = lgt__start(c, req, req_len)) < 0 || (rc = lgt__arm(epfd, c)) < 0)
                return rc;
        }
        busy += c->busy;
    }
    while (busy) {
        double now = lgt__now();
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
            return lgt__error(-errno, strerror(errno));
        }
        for (int j = 0; j < k; j++) {
            lgt_conn* c = (lgt_conn*)events[j].data.ptr;
            if (events[j].events & EPOLLOUT && (rc = lgt__flush(c)) < 0)
                return rc;
            if (events[j].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                ssize_t m = recv(c->fd, lgt__sink, sizeof(lgt__sink), 0);
                if (m < 0 && errno != EAGAIN && errno != EINTR)
                    return lgt__error(-errno, strerror(errno));
                if (m == 0)
                    return lgt__error(-ECONNRESET, "the server closed the connection");
                if (m > 0 && !c->busy)
                    return lgt__error(-EPROTO, "data from the server with no request");
                if (m > 0 && (rc = lgt__count(c, lgt__sink, (size_t)m, resp_len)) != 0) {
                    if (rc < 0)
                        return rc;
                    if (c->out_off < c->out_len)
                        return lgt__error(-EPROTO, "response before the whole request");
                    count++;
                    lg_hist_record(hist, &c->t0);
                    if (resend) {
                        if ((rc = lgt__start(c, req, req_len)) < 0)
                            return rc;
                    } else {
                        c->busy = 0;
                        busy--;
                    }
                }
            }
            if ((rc = lgt__arm(epfd, c)) < 0)
                return rc;
        }
    }
    if (*nslices < max_slices) {
        slice_t[*nslices] = lgt__now();
        slice_n[*nslices] = count;
        (*nslices)++;
    }
    if (!resend && busy)
        return lgt__error(-ETIMEDOUT, "responses still missing at the end of the drain");
    return count;
}
