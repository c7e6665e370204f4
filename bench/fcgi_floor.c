/* The floor relay: the least a Mongrel2-to-FastCGI bridge can do per request, as the
 * null handler is the least a handler can do. It is bench/null_handler.c plus one FastCGI
 * exchange: every request from Mongrel2 becomes one fixed, pre-encoded FastCGI request
 * (GET of SCRIPT on kept connections, FCGI_KEEP_CONN), and the app's STDOUT, split at its
 * blank line, goes back as "HTTP/1.1 200 OK" with a Content-Length. No request parsing
 * beyond the sender and connection id, no CGI environment, no Status header, no limits:
 * what is left is the ZeroMQ receive and send and the FastCGI socket work, which issue 8
 * calls the physical floor. m2bridge's cost above this relay's is the overhead it chose.
 * Connections are made on first use: php-fpm closes one that sends nothing for 5 s, and a
 * kept connection holds a php-fpm worker, so give the relay a pool of its own.
 *     fcgi_floor SEND_SPEC RECV_SPEC UNIX_SOCKET_PATH CONNECTIONS SCRIPT_FILENAME */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <zmq.h>

enum { kMaxConnections = 64, kMaxPending = 65536, kBuffer = 1 << 16 };

typedef struct {
    char sender[64];
    char id[32];
} Client;

typedef struct {
    int fd;
    int busy;
    Client client;
    size_t in_len;          /* bytes of records read, not yet taken apart */
    size_t out_len;         /* STDOUT content gathered */
    char in[kBuffer];
    char out[kBuffer];
} Backend;

static Backend backends[kMaxConnections];
static Client pending[kMaxPending];
static size_t pending_head, pending_count;
static char request[4096];
static size_t request_len;

static void put_record(int type, const char *content, size_t len) {
    unsigned char h[8] = {1, (unsigned char)type, 0, 1, (unsigned char)(len >> 8), (unsigned char)len, 0, 0};
    memcpy(request + request_len, h, 8);
    memcpy(request + request_len + 8, content, len);
    request_len += 8 + len;
}

static size_t put_pair(char *p, const char *name, const char *value) {
    size_t n = strlen(name), v = strlen(value);
    p[0] = (char)n;
    p[1] = (char)v;
    memcpy(p + 2, name, n);
    memcpy(p + 2 + n, value, v);
    return 2 + n + v;
}

static void encode_request(const char *script) {
    const char begin[8] = {0, 1 /* responder */, 1 /* keep conn */, 0, 0, 0, 0, 0};
    char params[2048];
    size_t n = 0;
    n += put_pair(params + n, "SCRIPT_FILENAME", script);
    n += put_pair(params + n, "REQUEST_METHOD", "GET");
    n += put_pair(params + n, "SERVER_PROTOCOL", "HTTP/1.1");
    n += put_pair(params + n, "GATEWAY_INTERFACE", "CGI/1.1");
    n += put_pair(params + n, "QUERY_STRING", "");
    put_record(1, begin, sizeof begin);
    put_record(4, params, n);
    put_record(4, "", 0);
    put_record(5, "", 0);
}

static int send_all(int fd, const char *p, size_t len) {
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static const char *backend_path;

static void start(Backend *b, const Client *c) {
    if (b->fd < 0) {
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        strncpy(addr.sun_path, backend_path, sizeof addr.sun_path - 1);
        b->fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (connect(b->fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
            perror("connect to backend");
            exit(1);
        }
    }
    b->client = *c;
    b->busy = 1;
    b->in_len = b->out_len = 0;
    if (send_all(b->fd, request, request_len) != 0) {
        perror("send to backend");
        exit(1);
    }
}

static void reply(void *pub, Backend *b) {
    static char msg[2 * kBuffer];
    const char *body = b->out, *end = b->out + b->out_len;
    const char *blank = memmem(b->out, b->out_len, "\r\n\r\n", 4);
    size_t head_len = blank ? (size_t)(blank - b->out) + 2 : 0;
    if (blank) body = blank + 4;
    int n = snprintf(msg, sizeof msg, "%s %zu:%s, HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n%.*s\r\n", b->client.sender,
                     strlen(b->client.id), b->client.id, (size_t)(end - body), (int)head_len, b->out);
    if (n < 0 || (size_t)n + (size_t)(end - body) > sizeof msg) return;
    memcpy(msg + n, body, (size_t)(end - body));
    zmq_send(pub, msg, (size_t)n + (size_t)(end - body), 0);
}

/* Takes the complete records apart; returns 1 when the request ended. */
static int take_records(Backend *b) {
    size_t at = 0;
    int ended = 0;
    while (b->in_len - at >= 8) {
        const unsigned char *h = (const unsigned char *)b->in + at;
        size_t len = ((size_t)h[4] << 8) | h[5], total = 8 + len + h[6];
        if (b->in_len - at < total) break;
        if (h[1] == 6 && b->out_len + len <= sizeof b->out) {
            memcpy(b->out + b->out_len, h + 8, len);
            b->out_len += len;
        }
        if (h[1] == 3) ended = 1;
        at += total;
    }
    memmove(b->in, b->in + at, b->in_len - at);
    b->in_len -= at;
    return ended;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s SEND_SPEC RECV_SPEC UNIX_SOCKET CONNECTIONS SCRIPT_FILENAME\n", argv[0]);
        return 2;
    }
    int connections = atoi(argv[4]);
    if (connections < 1 || connections > kMaxConnections) return 2;
    encode_request(argv[5]);
    backend_path = argv[3];
    for (int i = 0; i < connections; i++) backends[i].fd = -1;
    void *ctx = zmq_ctx_new();
    void *pull = zmq_socket(ctx, ZMQ_PULL), *pub = zmq_socket(ctx, ZMQ_PUB);
    if (zmq_connect(pull, argv[1]) != 0 || zmq_connect(pub, argv[2]) != 0) {
        fprintf(stderr, "connect: %s\n", zmq_strerror(zmq_errno()));
        return 1;
    }
    zmq_pollitem_t items[1 + kMaxConnections];
    items[0] = (zmq_pollitem_t){.socket = pull, .events = ZMQ_POLLIN};
    for (;;) {
        for (int i = 0; i < connections; i++) items[1 + i] = (zmq_pollitem_t){.fd = backends[i].fd, .events = ZMQ_POLLIN};
        if (zmq_poll(items, 1 + connections, -1) < 0 && zmq_errno() != EINTR) break;
        for (int i = 0; i < connections; i++) {
            Backend *b = &backends[i];
            if (!(items[1 + i].revents & ZMQ_POLLIN)) continue;
            ssize_t n = read(b->fd, b->in + b->in_len, sizeof b->in - b->in_len);
            if (n <= 0) {
                fprintf(stderr, "backend connection %d closed\n", i);
                return 1;
            }
            b->in_len += (size_t)n;
            if (!take_records(b)) continue;
            reply(pub, b);
            b->busy = 0;
            if (pending_count > 0) {
                start(b, &pending[pending_head]);
                pending_head = (pending_head + 1) % kMaxPending;
                pending_count--;
            }
        }
        /* Every message waiting, as m2bridge drains its PULL in one turn. */
        for (;;) {
            zmq_msg_t msg;
            zmq_msg_init(&msg);
            if (zmq_msg_recv(&msg, pull, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&msg);
                break;
            }
            /* "UUID ID PATH ..."; disconnect notices ("@*") need no answer. */
            const char *m = zmq_msg_data(&msg), *end = m + zmq_msg_size(&msg);
            const char *sp1 = memchr(m, ' ', (size_t)(end - m));
            const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1)) : NULL;
            const char *path = sp2 ? sp2 + 1 : NULL;
            Client c;
            if (sp2 && !(end - path >= 2 && path[0] == '@' && path[1] == '*') && (size_t)(sp1 - m) < sizeof c.sender &&
                (size_t)(sp2 - sp1 - 1) < sizeof c.id) {
                snprintf(c.sender, sizeof c.sender, "%.*s", (int)(sp1 - m), m);
                snprintf(c.id, sizeof c.id, "%.*s", (int)(sp2 - sp1 - 1), sp1 + 1);
                int idle = -1;
                for (int i = 0; i < connections && idle < 0; i++)
                    if (!backends[i].busy) idle = i;
                if (idle >= 0) {
                    start(&backends[idle], &c);
                } else if (pending_count < kMaxPending) {
                    pending[(pending_head + pending_count) % kMaxPending] = c;
                    pending_count++;
                }
            }
            zmq_msg_close(&msg);
        }
    }
    return 0;
}
