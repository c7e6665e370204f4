/* The client side of bench/longpoll.sh: N long-polls held through Mongrel2 and m2bridge, then
 * one request whose reply m2bridge delivers to all of them (X-Mongrel2-Deliver).
 *
 *   longpoll_driver M2_PORT N HOLDS_FILE METRICS_PORT BRIDGE_PID MONGREL2_PID FPM_PIDS
 *
 * FPM_PIDS: php-fpm processes, comma-separated. HOLDS_FILE: bench/longpoll/hold.php appends one
 * 12-byte record per held connection, so its size says how many the app has seen.
 *
 * 1. samples m2bridge's VmRSS, opens N connections and sends GET /hold.php on each, keeping at
 *    most LP_WINDOW (default 200) of them between "sent" and "recorded by hold.php";
 * 2. waits until the app has recorded N ids and m2bridge's --metrics say every request finished
 *    (the hold is registered before the request counts as finished), samples VmRSS again;
 * 3. sends GET /speak.php?tag=T on one more connection and waits until the speaker and every
 *    holder got a 200 whose body is exactly "news T\n"; the times are from the speak request.
 * CPU time is read from /proc/PID/task/TID/schedstat (nanoseconds, all threads) just before the
 * speak request and when the last holder has its reply; while waiting, it is read again at most
 * every LP_SAMPLE_US (default 1000) µs to find when each process last ran ("busy until").
 * Optional hooks run through system(): LP_BEFORE_SPEAK (e.g. start perf), LP_AFTER_SPEAK.
 * Prints the summary line and a details line; exits 1 if anything was wrong. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BUF 1024
#define RECORD 12 /* bytes per id in HOLDS_FILE */

struct conn {
    int fd;
    short len;
    char sent, done, bad, early;
    double t_done; /* ms after the speak request */
    char buf[BUF];
};

static struct conn *conns;
static int n, port, metrics_port;
static const char *holds_file;
static char expected[64];

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void die(const char *what) {
    fprintf(stderr, "longpoll_driver: %s: %s\n", what, strerror(errno));
    exit(2);
}

/* --- /proc ---------------------------------------------------------------------------------- */

static long rss_kb(int pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

static uint64_t read_ns(const char *path) {
    char text[128];
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    ssize_t got = read(fd, text, sizeof text - 1);
    close(fd);
    if (got <= 0) return 0;
    text[got] = 0;
    return strtoull(text, NULL, 10);
}

/* CPU ns of one process: its main thread (tid == pid) and all its other threads. */
static void cpu_ns(int pid, uint64_t *main_ns, uint64_t *other_ns) {
    char path[320];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "/proc/%d/task/%s/schedstat", pid, e->d_name);
        uint64_t ns = read_ns(path);
        if (atoi(e->d_name) == pid)
            *main_ns += ns;
        else
            *other_ns += ns;
    }
    closedir(d);
}

enum { BRIDGE_MAIN, BRIDGE_OTHER, M2_MAIN, M2_OTHER, FPM, SELF, NGROUPS };
static const char *group_names[NGROUPS] = {"m2bridge-main", "m2bridge-zmq", "mongrel2-main", "mongrel2-other",
                                           "php-fpm", "driver"};
static int bridge_pid, m2_pid, fpm_pids[64], nfpm;

static void sample(uint64_t out[NGROUPS]) {
    memset(out, 0, NGROUPS * sizeof out[0]);
    cpu_ns(bridge_pid, &out[BRIDGE_MAIN], &out[BRIDGE_OTHER]);
    cpu_ns(m2_pid, &out[M2_MAIN], &out[M2_OTHER]);
    for (int i = 0; i < nfpm; ++i) cpu_ns(fpm_pids[i], &out[FPM], &out[FPM]);
    cpu_ns(getpid(), &out[SELF], &out[SELF]);
}

/* --- m2bridge --metrics ----------------------------------------------------------------------- */

/* Sums of the samples of a few families; returns 0 on failure. */
static int scrape(double *requests_total, double *in_flight, double *queued) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(metrics_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0) close(fd);
        return 0;
    }
    static const char req[] = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
    if (write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1)) {
        close(fd);
        return 0;
    }
    static char text[1 << 16];
    size_t len = 0;
    ssize_t got;
    while (len < sizeof text - 1 && (got = read(fd, text + len, sizeof text - 1 - len)) > 0) len += got;
    close(fd);
    text[len] = 0;
    *requests_total = *in_flight = *queued = 0;
    for (char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        double *into = NULL;
        if (strncmp(line, "m2bridge_requests_total{", 24) == 0) into = requests_total;
        if (strncmp(line, "m2bridge_requests_in_flight{", 28) == 0) into = in_flight;
        if (strncmp(line, "m2bridge_requests_queued{", 25) == 0) into = queued;
        if (!into) continue;
        char *brace = strchr(line, '}');
        if (brace) *into += strtod(brace + 1, NULL);
    }
    return strstr(text, "m2bridge_requests_in_flight") != NULL;
}

static long recorded(void) {
    struct stat st;
    return stat(holds_file, &st) == 0 ? st.st_size / RECORD : 0;
}

/* --- HTTP ------------------------------------------------------------------------------------- */

static int open_conn(int blocking) {
    int fd = socket(AF_INET, SOCK_STREAM | (blocking ? 0 : SOCK_NONBLOCK), 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS) die("connect");
    return fd;
}

/* Reads what is there; returns 1 once a whole response is in (or the connection ended). */
static int take(struct conn *c) {
    for (;;) {
        if (c->len >= BUF - 1) {
            c->bad = 1;
            return 1;
        }
        ssize_t got = recv(c->fd, c->buf + c->len, BUF - 1 - c->len, 0);
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (got <= 0) { /* closed or reset before a whole response */
            c->bad = 1;
            return 1;
        }
        c->len += got;
    }
    c->buf[c->len] = 0;
    char *end = strstr(c->buf, "\r\n\r\n");
    if (!end) return 0;
    char *cl = strcasestr(c->buf, "\r\ncontent-length:");
    if (!cl || cl > end) {
        c->bad = 1;
        return 1;
    }
    long length = strtol(cl + 17, NULL, 10);
    char *body = end + 4;
    if (c->buf + c->len - body < length) return 0;
    if (strncmp(c->buf, "HTTP/1.1 200 ", 13) != 0 || length != (long)strlen(expected) ||
        memcmp(body, expected, length) != 0 || c->buf + c->len - body != length)
        c->bad = 1;
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: %s M2_PORT N HOLDS_FILE METRICS_PORT BRIDGE_PID MONGREL2_PID FPM_PIDS\n", argv[0]);
        return 2;
    }
    port = atoi(argv[1]);
    n = atoi(argv[2]);
    holds_file = argv[3];
    metrics_port = atoi(argv[4]);
    bridge_pid = atoi(argv[5]);
    m2_pid = atoi(argv[6]);
    for (char *p = strtok(argv[7], ","); p && nfpm < 64; p = strtok(NULL, ",")) fpm_pids[nfpm++] = atoi(p);
    int window = getenv("LP_WINDOW") ? atoi(getenv("LP_WINDOW")) : 200;
    double sample_ms = (getenv("LP_SAMPLE_US") ? atof(getenv("LP_SAMPLE_US")) : 1000) / 1000;
    double timeout_ms = 1000 * (getenv("LP_TIMEOUT") ? atof(getenv("LP_TIMEOUT")) : 30);
    conns = calloc(n + 1, sizeof *conns);
    int ep = epoll_create1(0);
    if (!conns || ep < 0) die("setup");
    struct epoll_event events[1024];

    double base_total, in_flight, queued;
    if (!scrape(&base_total, &in_flight, &queued)) die("m2bridge --metrics did not answer");
    long rss_before = rss_kb(bridge_pid);

    /* 1. open and send the holds, paced by what the app has recorded */
    static const char hold_req[] = "GET /hold.php HTTP/1.1\r\nHost: localhost\r\n\r\n";
    double t_open = now_ms();
    int opened = 0, sent = 0, early = 0;
    while (sent < n) {
        while (opened < n && opened - recorded() < window && opened - sent < 64) {
            struct conn *c = &conns[opened];
            c->fd = open_conn(0);
            struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = opened};
            if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) die("epoll_ctl");
            ++opened;
        }
        int k = epoll_wait(ep, events, 1024, 2);
        for (int i = 0; i < k; ++i) {
            struct conn *c = &conns[events[i].data.u32];
            if ((events[i].events & EPOLLOUT) && !c->sent) {
                if (send(c->fd, hold_req, sizeof hold_req - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof hold_req - 1))
                    die("send hold");
                c->sent = 1;
                ++sent;
                struct epoll_event ev = {.events = EPOLLIN, .data.u32 = events[i].data.u32};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
            } else if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                take(c);  /* a hold must not be answered */
                c->early = 1;
                ++early;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            }
        }
        if (now_ms() - t_open > 300000) {
            fprintf(stderr, "longpoll_driver: only %d of %d holds sent after 300 s\n", sent, n);
            return 1;
        }
    }
    double t_sent = now_ms();

    /* 2. all held: the app saw N ids and m2bridge finished every request */
    for (;;) {
        double total;
        if (recorded() >= n && scrape(&total, &in_flight, &queued) && total >= base_total + n && in_flight == 0 &&
            queued == 0)
            break;
        int k = epoll_wait(ep, events, 1024, 20);
        for (int i = 0; i < k; ++i) {
            struct conn *c = &conns[events[i].data.u32];
            take(c);
            c->early = 1;
            ++early;
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        }
        if (now_ms() - t_sent > 120000) {
            fprintf(stderr, "longpoll_driver: holds not all registered after 120 s (app recorded %ld of %d)\n",
                    recorded(), n);
            return 1;
        }
    }
    double t_held = now_ms();
    usleep(200000); /* let m2bridge settle (freed request memory, last log writes) */
    long rss_held = rss_kb(bridge_pid);
    fprintf(stderr, "longpoll_driver: %d holds sent in %.1f s, all registered %.1f s later; %d answered early\n", n,
            (t_sent - t_open) / 1e3, (t_held - t_sent) / 1e3, early);

    /* 3. the speaker */
    srand(time(NULL) ^ getpid());
    int tag = 100000 + rand() % 900000;
    snprintf(expected, sizeof expected, "news %d\n", tag);
    char speak_req[128];
    int speak_len = snprintf(speak_req, sizeof speak_req, "GET /speak.php?tag=%d HTTP/1.1\r\nHost: localhost\r\n\r\n", tag);
    struct conn *speaker = &conns[n];
    speaker->fd = open_conn(1);
    fcntl(speaker->fd, F_SETFL, O_NONBLOCK);
    struct epoll_event sev = {.events = EPOLLIN, .data.u32 = n};
    epoll_ctl(ep, EPOLL_CTL_ADD, speaker->fd, &sev);
    if (getenv("LP_BEFORE_SPEAK")) system(getenv("LP_BEFORE_SPEAK"));

    uint64_t cpu0[NGROUPS], cpu_last[NGROUPS], cpu_end[NGROUPS], cpu_prev[NGROUPS];
    double busy_until[NGROUPS] = {0};
    sample(cpu0);
    memcpy(cpu_prev, cpu0, sizeof cpu0);
    double t0 = now_ms();
    if (send(speaker->fd, speak_req, speak_len, MSG_NOSIGNAL) != speak_len) die("send speak");
    int done = early, bad = 0;
    double last = 0, next_sample = 0, t_all = -1;
    for (int i = 0; i < n; ++i) conns[i].done = conns[i].early;
    for (;;) {
        double t = now_ms() - t0;
        if (t >= next_sample) {
            uint64_t s[NGROUPS];
            sample(s);
            for (int g = 0; g < NGROUPS; ++g)
                if (g != SELF && s[g] > cpu_prev[g] + 20000) busy_until[g] = t; /* ran > 20 µs since */
            memcpy(cpu_prev, s, sizeof s);
            next_sample = t + sample_ms;
        }
        if (t_all >= 0 ? t > t_all + 300 : t > timeout_ms) break;  /* 300 ms to see who still runs */
        int k = epoll_wait(ep, events, 1024, 1);
        for (int i = 0; i < k; ++i) {
            struct conn *c = &conns[events[i].data.u32];
            if (c->done) {
                take(c); /* something after the reply */
                c->bad = 1;
                continue;
            }
            if (!take(c)) continue;
            c->done = 1;
            c->t_done = now_ms() - t0;
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            if (c->bad) ++bad;
            if (c != speaker && c->t_done > last) last = c->t_done;
            if (++done == n + 1 && t_all < 0) {
                t_all = now_ms() - t0;
                sample(cpu_end);
            }
        }
    }
    sample(cpu_last);
    if (t_all < 0) sample(cpu_end);
    if (getenv("LP_AFTER_SPEAK")) system(getenv("LP_AFTER_SPEAK"));

    int ok_holders = 0, missing = 0;
    for (int i = 0; i < n; ++i) {
        if (conns[i].done && !conns[i].bad && !conns[i].early) ++ok_holders;
        if (!conns[i].done) ++missing;
    }
    double ms[NGROUPS], ms_after[NGROUPS];
    for (int g = 0; g < NGROUPS; ++g) {
        ms[g] = (cpu_end[g] - cpu0[g]) / 1e6;
        ms_after[g] = (cpu_last[g] - cpu_end[g]) / 1e6;
    }
    long delta = rss_held - rss_before;
    printf("longpoll: %d held, m2bridge RSS %ld -> %ld kB (%.0f B per held), speaker answered in %.1f ms, "
           "last holder in %.1f ms (m2bridge cpu %.1f ms, mongrel2 cpu %.1f ms)\n",
           n, rss_before, rss_held, delta * 1024.0 / n, speaker->done ? speaker->t_done : -1.0,
           missing ? -1.0 : last, ms[BRIDGE_MAIN] + ms[BRIDGE_OTHER], ms[M2_MAIN] + ms[M2_OTHER]);
    printf("  holders with the exact body %d/%d (early %d, wrong %d, missing %d), speaker %s\n", ok_holders, n,
           early, bad - (speaker->bad ? 1 : 0), missing, speaker->done && !speaker->bad ? "ok" : "NOT ok");
    printf("  cpu ms from the speak request to the last reply (busy until, ms; cpu in the next 300 ms):\n   ");
    for (int g = 0; g < NGROUPS; ++g)
        printf(" %s %.1f (%.0f; +%.1f)", group_names[g], ms[g], g == SELF ? 0 : busy_until[g], ms_after[g]);
    printf("\n");
    int met = ok_holders == n && delta * 1024.0 / n <= 200 && last <= 120;
    printf("longpoll: goal (<= 200 B per held connection, last holder within 120 ms) %s\n", met ? "met" : "NOT met");
    return ok_holders == n && speaker->done && !speaker->bad ? 0 : 1;
}
