// A hung-request detector for the agent: PID 1 serves one request at a time, so a request that
// blocks in the kernel (a mount, a FUSE call, a child that never execs) stops the whole pod. The
// SIGALRM handler says on the console what the agent is doing and where the kernel holds it and
// its children (/proc/PID/stack, wchan). Everything in the handler is async-signal-safe.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cagentsys.h"

static char watched[160];
static volatile sig_atomic_t armed_seconds;
static volatile sig_atomic_t elapsed_seconds;

static void say(const char *s) { (void)!write(2, s, strlen(s)); }

static void say_number(long n) {
    char buf[24];
    int i = (int)sizeof buf;
    buf[--i] = 0;
    if (n == 0) buf[--i] = '0';
    while (n > 0 && i > 0) { buf[--i] = (char)('0' + n % 10); n /= 10; }
    say(buf + i);
}

// Copies a /proc file to the console, each line prefixed.
static void dump(const char *path, const char *prefix) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    char buf[2048];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return;
    buf[n] = 0;
    char *line = buf;
    while (*line) {
        char *end = strchr(line, '\n');
        if (end) *end = 0;
        say(prefix);
        say(line);
        say("\n");
        if (!end) break;
        line = end + 1;
    }
}

static long parse_long(const char *s) {
    long v = 0;
    while (*s >= '0' && *s <= '9') v = v * 10 + (*s++ - '0');
    return v;
}

// The parent pid from /proc/PID/stat ("pid (comm) state ppid ..."; comm may hold spaces).
static long parent_of(const char *pid) {
    char path[64] = "/proc/";
    strncat(path, pid, 20);
    strcat(path, "/stat");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char buf[512];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ' || !p[2] || p[3] != ' ') return -1;
    return parse_long(p + 4);
}

static void dump_process(const char *pid, const char *who) {
    char path[64] = "/proc/";
    strncat(path, pid, 20);
    size_t base = strlen(path);
    say("cocoon-agent:   ");
    say(who);
    say(" ");
    say(pid);
    say(" (");
    strcpy(path + base, "/comm");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        char comm[32];
        ssize_t n = read(fd, comm, sizeof comm - 1);
        close(fd);
        if (n > 0) { comm[n] = 0; char *nl = strchr(comm, '\n'); if (nl) *nl = 0; say(comm); }
    }
    say(") waits in ");
    strcpy(path + base, "/wchan");
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        char wchan[64];
        ssize_t n = read(fd, wchan, sizeof wchan - 1);
        close(fd);
        if (n > 0) { wchan[n] = 0; say(wchan); }
    }
    say("\n");
    strcpy(path + base, "/stack");
    dump(path, "cocoon-agent:     ");
}

struct linux_dirent64 {
    unsigned long long d_ino;
    long long d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

static void on_alarm(int sig) {
    (void)sig;
    int saved = errno;
    elapsed_seconds += armed_seconds;
    say("cocoon-agent: stuck for ");
    say_number(elapsed_seconds);
    say(" s in ");
    say(watched);
    say("\n");
    dump_process("self", "agent");
    long self = (long)getpid();
    int dir = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
        char buf[4096];
        long n;
        while ((n = syscall(SYS_getdents64, dir, buf, sizeof buf)) > 0) {
            for (long off = 0; off < n;) {
                struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + off);
                off += d->d_reclen;
                if (d->d_name[0] < '1' || d->d_name[0] > '9') continue;
                if (parent_of(d->d_name) == self) dump_process(d->d_name, "child");
            }
        }
        close(dir);
    }
    alarm((unsigned)armed_seconds);
    errno = saved;
}

void cocoon_watchdog_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
}

void cocoon_watchdog_arm(const char *what, unsigned seconds) {
    alarm(0);
    size_t n = strlen(what);
    if (n >= sizeof watched) n = sizeof watched - 1;
    memcpy(watched, what, n);
    watched[n] = 0;
    elapsed_seconds = 0;
    armed_seconds = (sig_atomic_t)seconds;
    alarm(seconds);
}

void cocoon_watchdog_disarm(void) { alarm(0); }
