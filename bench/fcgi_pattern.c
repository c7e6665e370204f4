/* A FastCGI app on libfcgi for bench/membound.sh: streams N bytes of a deterministic pattern as
 * fast as it can. It listens by itself, like examples/fcgi-hello:
 *     fcgi_pattern unix:/path.sock
 * GET /anything?n=BYTES          body of BYTES bytes, with Content-Length
 * GET /anything?n=BYTES&cl=0     the same without Content-Length (the reply is streamed chunked)
 * The pattern (bench/benchhttp.py pattern_blocks computes the same): 4096-byte blocks, each the
 * block's index as 8 little-endian bytes followed by 4088 bytes (i * 131 + 7) mod 251, i = 8..4095.
 * Built by the bench script: cc -O2 -o fcgi_pattern bench/fcgi_pattern.c -lfcgi */
#include <fcgiapp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 4096
#define BLOCKS_PER_WRITE 16

static long long param_ll(const char *query, const char *name, long long fallback) {
    size_t len = strlen(name);
    for (const char *p = query; p && *p;) {
        if (strncmp(p, name, len) == 0 && p[len] == '=') return strtoll(p + len + 1, NULL, 10);
        p = strchr(p, '&');
        if (p) p++;
    }
    return fallback;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s unix:/path.sock | HOST:PORT\n", argv[0]);
        return 2;
    }
    const char *address = argv[1];
    if (strncmp(address, "unix:", 5) == 0) address += 5;
    if (FCGX_Init() != 0) return 1;
    int sock = FCGX_OpenSocket(address, 128);
    if (sock < 0) {
        fprintf(stderr, "cannot listen on %s\n", argv[1]);
        return 1;
    }
    static unsigned char buf[BLOCK * BLOCKS_PER_WRITE];
    for (int b = 0; b < BLOCKS_PER_WRITE; b++)
        for (int i = 8; i < BLOCK; i++) buf[b * BLOCK + i] = (unsigned char)((i * 131 + 7) % 251);
    FCGX_Request req;
    FCGX_InitRequest(&req, sock, 0);
    while (FCGX_Accept_r(&req) >= 0) {
        const char *query = FCGX_GetParam("QUERY_STRING", req.envp);
        long long n = param_ll(query, "n", 0);
        int with_length = param_ll(query, "cl", 1) != 0;
        if (n < 0) n = 0;
        FCGX_FPrintF(req.out, "Content-Type: application/octet-stream\r\n");
        if (with_length) FCGX_FPrintF(req.out, "Content-Length: %lld\r\n", n);
        FCGX_FPrintF(req.out, "\r\n");
        uint64_t block = 0;
        for (long long sent = 0; sent < n;) {
            for (int b = 0; b < BLOCKS_PER_WRITE; b++) {
                uint64_t k = block + (uint64_t)b;
                for (int j = 0; j < 8; j++) buf[b * BLOCK + j] = (unsigned char)(k >> (8 * j));
            }
            long long left = n - sent;
            int len = left < (long long)sizeof buf ? (int)left : (int)sizeof buf;
            if (FCGX_PutStr((const char *)buf, len, req.out) != len) break;  /* client gone */
            sent += len;
            block += BLOCKS_PER_WRITE;
        }
        FCGX_Finish_r(&req);
    }
    return 0;
}
