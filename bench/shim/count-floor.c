/* The floor for counting, for the shim benchmark: a static C program that makes the same
 * system calls tally's shim makes in mode `local` (find the tool by file identity, read the
 * mode, the version cache and the weekday, map the week's counter file and add 1 to a
 * counter), then execv()s the tool, leaving the file mapped and open (close-on-exec) as tally
 * does. Nothing is parsed or hashed: what this adds over execv.c is what the file system and
 * the memory mapping cost, which no implementation of the design can avoid. Paths are set at
 * compile time by run.sh, from a data directory the real shim filled. The counter file is
 * opened with O_NOATIME, as tally opens it. Like execv.c, this is a plain static glibc program,
 * as tally-shim is when install.sh builds it: all three pay glibc's own start-up alike (tally no
 * longer replaces any of it; bench/README.md, "Not used any more"). */
#define _GNU_SOURCE /* O_NOATIME */
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if !defined(REAL_TOOL) || !defined(SHIM) || !defined(DATA) || !defined(VERSION_FILE) || !defined(COUNTER_FILE)
#error "compile with -DREAL_TOOL, -DSHIM, -DDATA, -DVERSION_FILE and -DCOUNTER_FILE (see run.sh)"
#endif

int main(int argc, char **argv) {
    (void)argc;
    char buf[256];
    struct stat st;
    /* The lookup: this program's identity, the shim on PATH (itself), the real tool. */
    stat("/proc/self/exe", &st);
    stat(SHIM, &st);
    stat(REAL_TOOL, &st);
    /* The mode (missing: local), whether the tool is a rustup proxy, the cached version, the
     * week's start day. */
    int fd = open(DATA "/mode", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) close(fd);
    lstat(REAL_TOOL, &st);
    fd = open(VERSION_FILE, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) { (void)!read(fd, buf, sizeof buf); close(fd); }
    fd = open(DATA "/weekday", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) { (void)!read(fd, buf, sizeof buf); close(fd); }
    /* The counter file: map it and add to a counter on its second page. */
    fd = open(COUNTER_FILE, O_RDWR | O_CLOEXEC | O_NOATIME);
    if (fd >= 0) {
        fstat(fd, &st);
        char *map = mmap(0, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (map != MAP_FAILED) {
            __atomic_fetch_add((long *)(map + 4096), 0, __ATOMIC_RELAXED);
            /* Kept mapped and open: the exec unmaps and closes it, as in tally. */
        }
    }
    execv(REAL_TOOL, argv);
    perror("execv " REAL_TOOL);
    return 127;
}
