/* A small FastCGI responder on libfcgi, the kind of C app m2bridge puts
 * behind Mongrel2. With an address it listens itself:
 *     fcgi-hello unix:/tmp/hello.sock     or     fcgi-hello 127.0.0.1:9000
 * With none it serves on the listening socket it was given as fd 0
 * (FCGI_LISTENSOCK_FILENO), as any FastCGI app started by a spawner does:
 *     m2bridge fastcgi --spawn 4 -- fcgi-hello
 * GET prints a greeting with the request's CGI variables; POST echoes the body. */
#include <fcgiapp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *var(FCGX_Request *r, const char *name) {
    const char *v = FCGX_GetParam(name, r->envp);
    return v ? v : "";
}

int main(int argc, char **argv) {
    if (argc > 2) {
        fprintf(stderr, "usage: %s [unix:/path.sock | HOST:PORT]   (none: the socket on fd 0)\n", argv[0]);
        return 2;
    }
    if (FCGX_Init() != 0) return 1;
    int sock = 0; /* FCGI_LISTENSOCK_FILENO, from a spawner */
    if (argc == 2) {
        const char *address = argv[1];
        if (strncmp(address, "unix:", 5) == 0) address += 5;
        sock = FCGX_OpenSocket(address, 128);
        if (sock < 0) {
            fprintf(stderr, "cannot listen on %s\n", argv[1]);
            return 1;
        }
    }
    FCGX_Request req;
    FCGX_InitRequest(&req, sock, 0);
    while (FCGX_Accept_r(&req) >= 0) {
        const char *method = var(&req, "REQUEST_METHOD");
        if (strcmp(method, "POST") == 0) {
            long length = atol(var(&req, "CONTENT_LENGTH"));
            FCGX_FPrintF(req.out, "Content-Type: application/octet-stream\r\n\r\n");
            char buf[65536];
            while (length > 0) {
                int n = FCGX_GetStr(buf, length < (long)sizeof buf ? (int)length : (int)sizeof buf, req.in);
                if (n <= 0) break;
                FCGX_PutStr(buf, n, req.out);
                length -= n;
            }
        } else {
            FCGX_FPrintF(req.out,
                         "Content-Type: text/plain\r\n\r\n"
                         "Hello from a libfcgi app behind Mongrel2.\n"
                         "REQUEST_METHOD=%s\nREQUEST_URI=%s\nSCRIPT_NAME=%s\nPATH_INFO=%s\nQUERY_STRING=%s\n"
                         "X_MONGREL2_CONN_ID=%s\n",
                         method, var(&req, "REQUEST_URI"), var(&req, "SCRIPT_NAME"), var(&req, "PATH_INFO"),
                         var(&req, "QUERY_STRING"), var(&req, "X_MONGREL2_CONN_ID"));
        }
        FCGX_Finish_r(&req);
    }
    return 0;
}
