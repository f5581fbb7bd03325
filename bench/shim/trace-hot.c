/* Prints the address of every instruction a program runs, natively, until it execs another
 * program (or exits): the shim's hot path, for bench/shim/order.py. Single-steps the child
 * with ptrace, so it sees exactly what the real CPU runs (the string functions glibc picks for
 * this CPU, statx and all), unlike valgrind's emulation.
 * Usage: trace-hot PROGRAM ARGS... > addresses   (one hex address per line, each once) */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#define SLOTS (1u << 22)
static uint64_t seen[SLOTS];

static int insert(uint64_t a) {
    uint64_t h = (a * 0x9E3779B97F4A7C15ull) >> 42;
    for (;;) {
        h &= SLOTS - 1;
        if (seen[h] == a) return 0;
        if (seen[h] == 0) { seen[h] = a; return 1; }
        h++;
    }
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: trace-hot PROGRAM ARGS...\n"); return 2; }
    pid_t pid = fork();
    if (pid == 0) {
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        execvp(argv[1], argv + 1);
        perror("execvp");
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0); /* stopped at its own exec */
    ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL);
    unsigned long steps = 0;
    for (;;) {
        struct user_regs_struct regs;
        if (ptrace(PTRACE_GETREGS, pid, 0, &regs) == 0 && insert(regs.rip))
            printf("%llx\n", (unsigned long long)regs.rip);
        if (ptrace(PTRACE_SINGLESTEP, pid, 0, 0) != 0) break;
        if (waitpid(pid, &status, 0) < 0) break;
        steps++;
        if (WIFEXITED(status) || WIFSIGNALED(status)) break;
        if (WIFSTOPPED(status) && (status >> 8) == (SIGTRAP | (PTRACE_EVENT_EXEC << 8))) {
            kill(pid, SIGKILL);
            break;
        }
    }
    fprintf(stderr, "trace-hot: %lu instructions stepped\n", steps);
    return 0;
}
