/* The ceiling for CGI: spawn a program, read its stdout to EOF, reap it; as
 * fast as one loop can, with `parallel` loops at once (fork per loop).
 * Usage: spawn_loop PROGRAM SECONDS PARALLEL   → prints spawns per second. */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long loop(const char *program, double seconds) {
    long count = 0;
    double end = now() + seconds;
    char buf[4096];
    while (now() < end) {
        int fds[2];
        if (pipe(fds) != 0) return count;
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
        posix_spawn_file_actions_addclose(&actions, fds[0]);
        char *argv[] = {(char *)program, NULL};
        pid_t pid;
        if (posix_spawn(&pid, program, &actions, NULL, argv, environ) != 0) return count;
        posix_spawn_file_actions_destroy(&actions);
        close(fds[1]);
        while (read(fds[0], buf, sizeof buf) > 0) {
        }
        close(fds[0]);
        waitpid(pid, NULL, 0);
        count++;
    }
    return count;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s PROGRAM SECONDS PARALLEL\n", argv[0]);
        return 2;
    }
    double seconds = atof(argv[2]);
    int parallel = atoi(argv[3]);
    int fds[2];
    if (pipe(fds) != 0) return 1;
    for (int i = 0; i < parallel; i++) {
        if (fork() == 0) {
            long n = loop(argv[1], seconds);
            if (write(fds[1], &n, sizeof n) != sizeof n) _exit(1);
            _exit(0);
        }
    }
    long total = 0;
    for (int i = 0; i < parallel; i++) {
        long n = 0;
        if (read(fds[0], &n, sizeof n) == sizeof n) total += n;
        wait(NULL);
    }
    printf("%.1f\n", total / seconds);
    return 0;
}
