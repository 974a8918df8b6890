/*
 * not_a_library.c: a program, not a plugin. The broken-file tests (tests/it/broken.rs) build it
 * as an ELF executable and as a position-independent executable, named like a shared library,
 * to check that the host refuses each with its own message:
 *   cc -no-pie tests/broken/not_a_library.c -o libexecutable.so
 *   cc -pie -fPIE tests/broken/not_a_library.c -o libpie.so
 */
int main(void) { return 0; }
