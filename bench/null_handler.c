/* The null handler: the least a Mongrel2 handler can do per request (one ZeroMQ
 * receive, one send, nothing in between), as the floor m2bridge's cost is read
 * against. Answers every request with "Hello, world\n".
 *     null_handler SEND_SPEC RECV_SPEC */
#include <stdio.h>
#include <string.h>
#include <zmq.h>

static const char kReply[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world\n";

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s SEND_SPEC RECV_SPEC\n", argv[0]);
        return 2;
    }
    void *ctx = zmq_ctx_new();
    void *pull = zmq_socket(ctx, ZMQ_PULL), *pub = zmq_socket(ctx, ZMQ_PUB);
    if (zmq_connect(pull, argv[1]) != 0 || zmq_connect(pub, argv[2]) != 0) {
        fprintf(stderr, "connect: %s\n", zmq_strerror(zmq_errno()));
        return 1;
    }
    char out[65536];
    for (;;) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, pull, 0) < 0) break;
        /* "UUID ID PATH ...": the reply is "UUID LEN:ID, HTTP-RESPONSE". */
        const char *m = zmq_msg_data(&msg), *end = m + zmq_msg_size(&msg);
        const char *sp1 = memchr(m, ' ', (size_t)(end - m));
        const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1)) : NULL;
        const char *path = sp2 ? sp2 + 1 : NULL;
        /* Disconnect notices ("@*") need no answer. */
        if (sp2 && !(end - path >= 2 && path[0] == '@' && path[1] == '*')) {
            int n = snprintf(out, sizeof out, "%.*s %d:%.*s, %s", (int)(sp1 - m), m, (int)(sp2 - sp1 - 1),
                             (int)(sp2 - sp1 - 1), sp1 + 1, kReply);
            if (n > 0 && (size_t)n < sizeof out) zmq_send(pub, out, (size_t)n, 0);
        }
        zmq_msg_close(&msg);
    }
    zmq_close(pull);
    zmq_close(pub);
    zmq_ctx_term(ctx);
    return 0;
}
