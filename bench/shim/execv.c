/* The baseline for the shim benchmark: a static program that does nothing but execv the real
 * tool, keeping argv. REAL_TOOL is set at compile time by run.sh. */
#include <stdio.h>
#include <unistd.h>

#ifndef REAL_TOOL
#error "compile with -DREAL_TOOL='\"/path/to/rustc\"'"
#endif

int main(int argc, char **argv) {
    (void)argc;
    execv(REAL_TOOL, argv);
    perror("execv " REAL_TOOL);
    return 127;
}
