// cocoon-pause: the infra process of a native pod. It holds the pod's namespaces by living in
// them and, as PID 1 of a PID namespace its containers share, reaps the orphans the kernel hands
// it. SIGINT and SIGTERM end it with status 0, and it is killed when the agent that started it
// ends (set here, after exec: a root exec that gains capabilities clears a setting made before), so
// it never outlives its pod's agent as an orphan of the node's init. It does nothing else: no
// output, no files, no allocation. Signals are blocked except inside sigsuspend, so none is missed
// between the checks.
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>

static volatile sig_atomic_t stopRequested;

static void onStop(int signal) {
    (void)signal;
    stopRequested = 1;
}

static void onChild(int signal) { (void)signal; }

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        puts("cocoon-pause 1");
        return 0;
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    sigprocmask(SIG_BLOCK, &all, NULL);
    struct sigaction stop = {.sa_handler = onStop};
    sigaction(SIGINT, &stop, NULL);
    sigaction(SIGTERM, &stop, NULL);
    struct sigaction child = {.sa_handler = onChild, .sa_flags = SA_NOCLDSTOP};
    sigaction(SIGCHLD, &child, NULL);
    for (;;) {
        while (waitpid(-1, NULL, WNOHANG) > 0) {}
        if (stopRequested) return 0;
        sigsuspend(&none);
    }
}
