/* The floor for the wrapper benchmark: a RUSTC_WRAPPER that does nothing but execv the
 * compiler cargo hands it (`exec_wrapper /abs/rustc args...`), keeping the arguments. No
 * wrapper can cost less than one extra exec per compiler run; bench.py builds this with
 * `cc -O2 -static` (static glibc, as tally's release build) and measures it beside tally. */
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs("usage: exec_wrapper COMPILER [ARGS...]\n", stderr);
        return 2;
    }
    execv(argv[1], argv + 1);
    perror("execv");
    return 127;
}
