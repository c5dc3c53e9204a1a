// A hung-request detector for the agent: PID 1 serves one request at a time, so a request that
// blocks in the kernel (a mount, a disk read, a FUSE call, a child that never execs) stops the
// whole pod. A thread of its own (a signal would wait for an uninterruptible sleep to end) says on
// the console what the agent is doing, where the kernel holds it and its children
// (/proc/PID/stack, wchan) and the kernel's last messages. It allocates nothing: the agent's
// clone-to-exec path may run beside it.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "cagentsys.h"

static char watched[160];
static char agent_pid[16] = "1";
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
// When the watched work started (CLOCK_BOOTTIME milliseconds, 0: nothing watched), and every how
// many milliseconds to report.
static long armed_at;
static long every;
// Counts armings: a new one starts its own report clock, even within the same second.
static unsigned long generation;

static int out_fd = 2;

static void say(const char *s) { (void)!write(out_fd, s, strlen(s)); }

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

// The kernel's last messages (SCSI timeouts, hung tasks, ...), read without blocking from /dev/kmsg.
static void dump_kernel_log(void) {
    int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return;
    static char last[12][200];
    int n = 0;
    char record[1024];
    ssize_t got;
    while ((got = read(fd, record, sizeof record - 1)) > 0 || (got < 0 && errno == EPIPE)) {
        if (got <= 0) continue;
        record[got] = 0;
        char *text = strchr(record, ';');
        text = text ? text + 1 : record;
        char *nl = strchr(text, '\n');
        if (nl) *nl = 0;
        strncpy(last[n % 12], text, sizeof last[0] - 1);
        last[n % 12][sizeof last[0] - 1] = 0;
        n++;
    }
    close(fd);
    say("cocoon-agent:   kernel log (last lines):\n");
    for (int i = n > 12 ? n - 12 : 0; i < n; i++) {
        say("cocoon-agent:     ");
        say(last[i % 12]);
        say("\n");
    }
}

static long boottime_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void report(long elapsed, const char *what) {
    say("cocoon-agent: stuck for ");
    say_number(elapsed);
    say(" s in ");
    say(what);
    say("\n");
    dump_process(agent_pid, "agent");
    int dir = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
        char buf[4096];
        long n;
        while ((n = syscall(SYS_getdents64, dir, buf, sizeof buf)) > 0) {
            for (long off = 0; off < n;) {
                struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + off);
                off += d->d_reclen;
                if (d->d_name[0] < '1' || d->d_name[0] > '9') continue;
                if (parent_of(d->d_name) == parse_long(agent_pid)) dump_process(d->d_name, "child");
            }
        }
        close(dir);
    }
    dump_kernel_log();
}

static void *watch(void *unused) {
    (void)unused;
    long next = 0;
    unsigned long seen = 0;
    for (;;) {
        usleep(100000);
        char what[sizeof watched];
        pthread_mutex_lock(&lock);
        long since = armed_at, period = every;
        unsigned long current = generation;
        memcpy(what, watched, sizeof what);
        pthread_mutex_unlock(&lock);
        if (since == 0 || period <= 0) continue;
        if (current != seen) {
            seen = current;
            next = since + period;
        }
        long now = boottime_ms();
        if (now >= next) {
            report((now - since) / 1000, what);
            next += period;
        }
    }
    return NULL;
}

void cocoon_watchdog_install(int fd) {
    static int installed;
    out_fd = fd;
    if (installed++) return;  // one thread; a later call only moves its output
    long pid = (long)getpid();
    int i = (int)sizeof agent_pid - 1;
    agent_pid[i] = 0;
    do { agent_pid[--i] = (char)('0' + pid % 10); pid /= 10; } while (pid > 0 && i > 0);
    memmove(agent_pid, agent_pid + i, sizeof agent_pid - (size_t)i);
    // The thread starts with every signal blocked: SIGCHLD must stay for the agent's signalfd.
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    pthread_t thread;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 128 << 10);
    if (pthread_create(&thread, &attr, watch, NULL) == 0) pthread_detach(thread);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
}

void cocoon_watchdog_arm(const char *what, unsigned seconds) {
    pthread_mutex_lock(&lock);
    size_t n = strlen(what);
    if (n >= sizeof watched) n = sizeof watched - 1;
    memcpy(watched, what, n);
    watched[n] = 0;
    armed_at = boottime_ms();
    every = (long)seconds * 1000;
    generation++;
    pthread_mutex_unlock(&lock);
}

void cocoon_watchdog_disarm(void) {
    pthread_mutex_lock(&lock);
    armed_at = 0;
    pthread_mutex_unlock(&lock);
}
