/*
 * The guest's /init: mounts /proc, then execs the Swift agent as PID 1.
 * A fully static Swift binary looks up its own path through /proc/self/exe while the C++ runtime
 * initializes, before main() runs, so /proc must exist first. This shim is all that runs before it.
 */
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    (void)argc;
    mkdir("/proc", 0555);
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
        perror("cocoon-init: mount /proc");
    argv[0] = "/sbin/cocoon-agent";
    execv("/sbin/cocoon-agent", argv);
    perror("cocoon-init: exec /sbin/cocoon-agent");
    return 1;
}
