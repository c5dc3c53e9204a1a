#define _GNU_SOURCE
#include "ccore.h"
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

enum { NS_MNT, NS_UTS, NS_IPC, NS_PID, NS_COUNT };
static const char *const ns_names[NS_COUNT] = {"mnt", "uts", "ipc", "pid"};
static const int ns_types[NS_COUNT] = {CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWPID};

int ccore_pipe(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int ccore_pivot_root(const char *new_root, const char *put_old) {
    return (int)syscall(SYS_pivot_root, new_root, put_old);
}

/* --- child side: no allocation, no locks, async-signal-safe calls only --- */

static size_t slen(const char *s) { size_t n = 0; while (s[n]) n++; return n; }

/// Reports "<step>\n<errno>" to the parent and exits.
static void __attribute__((noreturn)) fail(const struct ccore_spawn *s, const char *step, const char *detail) {
    int e = errno;
    char buf[600];
    size_t n = 0;
    for (const char *p = step; *p && n < 200; p++) buf[n++] = *p;
    if (detail) { buf[n++] = ' '; for (const char *p = detail; *p && n < 500; p++) buf[n++] = *p; }
    buf[n++] = '\n';
    char digits[16]; int d = 0; unsigned v = (unsigned)e;
    do { digits[d++] = (char)('0' + v % 10); v /= 10; } while (v && d < 15);
    while (d > 0) buf[n++] = digits[--d];
    if (s->error_fd >= 0) { ssize_t w = write(s->error_fd, buf, n); (void)w; }
    _exit(127);
}

static int join(char *out, size_t cap, const char *a, const char *b) {
    size_t la = slen(a), lb = slen(b);
    if (la + lb + 2 > cap) return -1;
    memcpy(out, a, la);
    size_t n = la;
    if (n == 0 || out[n - 1] != '/') out[n++] = '/';
    while (*b == '/') { b++; lb--; }
    memcpy(out + n, b, lb + 1);
    return 0;
}

static void setup_dev(const struct ccore_spawn *s) {
    char path[4096];
    if (join(path, sizeof path, s->rootfs, "dev") < 0) { errno = ENAMETOOLONG; fail(s, "mount /dev", NULL); }
    if (mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k") < 0) fail(s, "mount /dev", NULL);
    static const struct { const char *name; unsigned maj, min; } nodes[] = {
        {"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
    };
    for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
        char node[4096], host[64];
        join(node, sizeof node, path, nodes[i].name);
        if (mknod(node, S_IFCHR | 0666, makedev(nodes[i].maj, nodes[i].min)) == 0) { chmod(node, 0666); continue; }
        // Without CAP_MKNOD: bind the host's node, as runc does for rootless containers.
        int fd = open(node, O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
        if (fd < 0) fail(s, "create /dev node", nodes[i].name);
        close(fd);
        join(host, sizeof host, "/dev", nodes[i].name);
        if (mount(host, node, NULL, MS_BIND, NULL) < 0) fail(s, "bind /dev node", nodes[i].name);
    }
    static const struct { const char *name, *target; } links[] = {
        {"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"},
        {"stderr", "/proc/self/fd/2"}, {"ptmx", "pts/ptmx"}, {"core", "/proc/kcore"},
    };
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
        char link[4096];
        join(link, sizeof link, path, links[i].name);
        if (symlink(links[i].target, link) < 0) fail(s, "symlink /dev", links[i].name);
    }
    static const struct { const char *dir, *type, *data; unsigned long flags; } subs[] = {
        {"pts", "devpts", "newinstance,ptmxmode=0666,mode=0620,gid=5", MS_NOSUID | MS_NOEXEC},
        {"shm", "tmpfs", "mode=1777,size=65536k", MS_NOSUID | MS_NODEV | MS_NOEXEC},
        {"mqueue", "mqueue", NULL, MS_NOSUID | MS_NODEV | MS_NOEXEC},
    };
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        char dir[4096];
        join(dir, sizeof dir, path, subs[i].dir);
        if (mkdir(dir, 0755) < 0 && errno != EEXIST) fail(s, "mkdir /dev", subs[i].dir);
        if (mount(subs[i].type, dir, subs[i].type, subs[i].flags, subs[i].data) < 0) fail(s, "mount /dev", subs[i].dir);
    }
}

/// A mount target that a filesystem mounted earlier hid (one below /dev, on its fresh tmpfs): made
/// again, its missing parents as directories, itself as a file or a directory.
static void ensure_target(const char *target, int is_file) {
    struct stat st;
    if (lstat(target, &st) == 0) return;
    char path[4096];
    size_t n = slen(target);
    if (n >= sizeof path) return;
    memcpy(path, target, n + 1);
    for (size_t i = 1; i < n; i++) {
        if (path[i] != '/') continue;
        path[i] = 0;
        mkdir(path, 0755);
        path[i] = '/';
    }
    if (is_file) {
        int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd >= 0) close(fd);
    } else {
        mkdir(path, 0755);
    }
}

static void setup_filesystem(const struct ccore_spawn *s) {
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) fail(s, "make / private", NULL);
    if (mount(s->rootfs, s->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0) fail(s, "bind rootfs", s->rootfs);
    char path[4096];
    if (s->mount_proc_sys) {
        if (join(path, sizeof path, s->rootfs, "proc") < 0 || mount("proc", path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
            fail(s, "mount /proc", NULL);
        if (join(path, sizeof path, s->rootfs, "sys") < 0 ||
            mount("sysfs", path, "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, NULL) < 0)
            fail(s, "mount /sys", NULL);
        // The container's own cgroup (its cgroup namespace root), read-only, as runc mounts it.
        if (join(path, sizeof path, s->rootfs, "sys/fs/cgroup") == 0)
            mount("cgroup2", path, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, NULL);
    }
    if (s->setup_dev) setup_dev(s);
    for (int i = 0; i < s->n_mounts; i++) {
        const struct ccore_mount *m = &s->mounts[i];
        ensure_target(m->target, m->target_is_file);
        if (m->bind) {
            if (mount(m->source, m->target, NULL, MS_BIND | MS_REC, NULL) < 0) fail(s, "bind mount", m->target);
            if ((m->readonly || m->flags) &&
                mount(NULL, m->target, NULL, MS_BIND | MS_REMOUNT | (m->readonly ? MS_RDONLY : 0) | m->flags, NULL) < 0)
                fail(s, "remount with its flags", m->target);
        } else if (mount(m->source, m->target, m->fstype, m->flags | (m->readonly ? MS_RDONLY : 0), m->data) < 0) {
            fail(s, "mount", m->target);
        }
    }
    if (chdir(s->rootfs) < 0) fail(s, "chdir rootfs", s->rootfs);
    if (ccore_pivot_root(".", ".") == 0) {
        if (umount2(".", MNT_DETACH) < 0) fail(s, "detach old root", NULL);
    } else if (errno == EINVAL) {
        // The current root is the initramfs, which pivot_root refuses (runc --no-pivot does the same):
        // move the new root over / in this private mount namespace and chroot into it.
        if (mount(s->rootfs, "/", NULL, MS_MOVE, NULL) < 0) fail(s, "move rootfs to /", s->rootfs);
        if (chroot(".") < 0) fail(s, "chroot", s->rootfs);
    } else {
        fail(s, "pivot_root", s->rootfs);
    }
    if (chdir("/") < 0) fail(s, "chdir /", NULL);
    for (int i = 0; i < s->n_masked; i++) {
        struct stat st;
        if (stat(s->masked_paths[i], &st) < 0) continue;
        int rc = S_ISDIR(st.st_mode) ? mount("tmpfs", s->masked_paths[i], "tmpfs", MS_RDONLY, NULL)
                                     : mount("/dev/null", s->masked_paths[i], NULL, MS_BIND, NULL);
        if (rc < 0) fail(s, "mask", s->masked_paths[i]);
    }
    for (int i = 0; i < s->n_readonly; i++) {
        const char *p = s->readonly_paths[i];
        if (access(p, F_OK) < 0) continue;
        if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0 ||
            mount(NULL, p, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
            fail(s, "read-only path", p);
    }
    if (s->readonly_rootfs && mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) < 0)
        fail(s, "remount rootfs read-only", NULL);
}

static void set_capabilities(const struct ccore_spawn *s) {
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    for (int i = 0; i < 2; i++) {
        uint32_t word = (uint32_t)(s->capabilities >> (32 * i));
        data[i].effective = data[i].permitted = word;
        data[i].inheritable = 0;  // as runc >= 1.1.2 (CVE-2022-24769): file inheritable caps grant nothing
    }
    if (syscall(SYS_capset, &hdr, data) < 0) fail(s, "capset", NULL);
}

/// A container process starts as runc starts it: no signal blocked, every disposition the default
/// (the caller may block SIGCHLD for a signalfd or ignore SIGPIPE; neither is the container's business).
static void reset_signals(void) {
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < _NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        sigaction(sig, &dfl, NULL);  // EINVAL for the few the C library reserves: fine
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/// Opens a terminal in the devpts of the container's /dev, sends its master to the caller and
/// returns the terminal, owned by the process's user as a login terminal is.
static int open_console(const struct ccore_spawn *s) {
    int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0) fail(s, "open the container's /dev/ptmx", NULL);
    int unlock = 0;
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0) fail(s, "unlock terminal", NULL);
    int terminal = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY);
    if (terminal < 0) fail(s, "open terminal", NULL);
    if (fchown(terminal, s->uid, (gid_t)-1) < 0) fail(s, "chown terminal", NULL);
    char byte = 0;
    struct iovec iov = {&byte, 1};
    union { struct cmsghdr align; char buf[CMSG_SPACE(sizeof(int))]; } control;
    memset(&control, 0, sizeof control);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = sizeof control.buf};
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &master, sizeof(int));
    if (sendmsg(s->console_socket, &msg, MSG_NOSIGNAL) != 1) fail(s, "send terminal", NULL);
    close(master);
    close(s->console_socket);
    return terminal;
}

int ccore_recv_fd(int socket) {
    char byte;
    struct iovec iov = {&byte, 1};
    union { struct cmsghdr align; char buf[CMSG_SPACE(sizeof(int))]; } control;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = sizeof control.buf};
    ssize_t n = recvmsg(socket, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n != 1) { if (n >= 0) errno = EPROTO; return -1; }
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    if (!cmsg || cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS ||
        cmsg->cmsg_len != CMSG_LEN(sizeof(int))) { errno = EPROTO; return -1; }
    int fd;
    memcpy(&fd, CMSG_DATA(cmsg), sizeof(int));
    return fd;
}

static void __attribute__((noreturn)) child(const struct ccore_spawn *s, const int *nsfds) {
    reset_signals();
    char byte;
    if (s->sync_fd >= 0 && read(s->sync_fd, &byte, 1) != 1) _exit(126);  // parent gave up
    if (s->join_pid > 0) {
        for (int i = NS_MNT; i < NS_PID; i++)
            if (setns(nsfds[i], ns_types[i]) < 0) fail(s, "join namespace", ns_names[i]);
    } else {
        // Now that the parent has placed it in its cgroup, that cgroup becomes the namespace's root.
        if (s->new_namespaces && unshare(CLONE_NEWCGROUP) < 0) fail(s, "new cgroup namespace", NULL);
        setup_filesystem(s);
        if (s->hostname && sethostname(s->hostname, slen(s->hostname)) < 0) fail(s, "sethostname", NULL);
    }
    int console = s->console_socket >= 0 ? open_console(s) : -1;
    for (int cap = 0; cap <= s->last_cap; cap++) {
        if (!(s->capabilities & (1ull << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
            fail(s, "drop capability from bounding set", NULL);
    }
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    if (s->seccomp_filter && !s->no_new_privs && prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, s->seccomp_filter) < 0)
        fail(s, "load seccomp filter", NULL);
    if (setgroups((size_t)s->n_groups, s->groups) < 0) fail(s, "setgroups", NULL);
    if (setresgid(s->gid, s->gid, s->gid) < 0) fail(s, "setgid", NULL);
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) fail(s, "keep capabilities", NULL);
    if (setresuid(s->uid, s->uid, s->uid) < 0) fail(s, "setuid", NULL);
    set_capabilities(s);
    if (s->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) fail(s, "no_new_privs", NULL);
    if (s->cwd && chdir(s->cwd) < 0) fail(s, "chdir to working directory", s->cwd);
    for (int i = 0; i < 3; i++) {
        int fd = console >= 0 ? console : s->stdio[i];
        if (fd < 0) {
            fd = open("/dev/null", O_RDWR);
            if (fd < 0) fail(s, "open /dev/null", NULL);
        }
        if (fd != i && dup2(fd, i) < 0) fail(s, "dup2 stdio", NULL);
    }
    if (s->controlling_tty) {
        if (setsid() < 0) fail(s, "setsid", NULL);
        if (ioctl(0, TIOCSCTTY, 0) < 0) fail(s, "set controlling terminal", NULL);
    }
    if (syscall(SYS_close_range, 3, ~0U, 4 /* CLOSE_RANGE_CLOEXEC */) < 0) {
        for (int fd = 3; fd < 4096; fd++) if (fd != s->error_fd) fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    if (s->seccomp_filter && s->no_new_privs && prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, s->seccomp_filter) < 0)
        fail(s, "load seccomp filter", NULL);
    const char *file = s->argv[0];
    if (!file || !*file) { errno = ENOENT; fail(s, "exec", "(empty)"); }
    char *const *argv = (char *const *)s->argv;
    char *const *envp = (char *const *)s->envp;
    if (strchr(file, '/')) {
        execve(file, argv, envp);
        fail(s, "exec", file);
    }
    const char *p = s->path_env ? s->path_env : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    int saw_eacces = 0;
    while (*p) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : slen(p);
        char candidate[4096];
        size_t flen = slen(file);
        if (len + flen + 2 < sizeof candidate) {
            memcpy(candidate, len ? p : ".", len ? len : 1);
            size_t n = len ? len : 1;
            candidate[n++] = '/';
            memcpy(candidate + n, file, flen + 1);
            execve(candidate, argv, envp);
            if (errno == EACCES) saw_eacces = 1;
        }
        if (!end) break;
        p = end + 1;
    }
    errno = saw_eacces ? EACCES : ENOENT;
    fail(s, "exec: executable file not found in $PATH:", file);
}

pid_t ccore_spawn(const struct ccore_spawn *s) {
    int nsfds[NS_COUNT] = {-1, -1, -1, -1};
    int own_pidns = -1;
    int flags = s->new_namespaces
        ? (CLONE_NEWNS | CLONE_NEWUTS | (s->share_pid ? 0 : CLONE_NEWPID) | (s->share_ipc ? 0 : CLONE_NEWIPC))
        : 0;
    if (s->join_pid <= 0 && s->new_namespaces && s->join_pidns_of > 0) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/ns/pid", (int)s->join_pidns_of);
        int target = open(path, O_RDONLY | O_CLOEXEC);
        if (target < 0) goto fail;
        own_pidns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
        int joined = own_pidns >= 0 ? setns(target, CLONE_NEWPID) : -1;
        int saved_join = errno;
        close(target);
        errno = saved_join;
        if (joined < 0) goto fail;
        flags &= ~CLONE_NEWPID;
    }
    if (s->join_pid > 0) {
        for (int i = 0; i < NS_COUNT; i++) {
            char path[64];
            snprintf(path, sizeof path, "/proc/%d/ns/%s", (int)s->join_pid, ns_names[i]);
            nsfds[i] = open(path, O_RDONLY | O_CLOEXEC);
            if (nsfds[i] < 0) goto fail;
        }
        own_pidns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
        // The PID namespace of a process is fixed at its creation: this thread's children join it.
        if (own_pidns < 0 || setns(nsfds[NS_PID], CLONE_NEWPID) < 0) goto fail;
        flags = 0;
    }
    pid_t pid = (pid_t)syscall(SYS_clone, (unsigned long)flags | SIGCHLD, NULL, NULL, NULL, 0);
    if (pid == 0) child(s, nsfds);
    int saved = errno;
    if (own_pidns >= 0) { setns(own_pidns, CLONE_NEWPID); close(own_pidns); }
    for (int i = 0; i < NS_COUNT; i++) if (nsfds[i] >= 0) close(nsfds[i]);
    errno = saved;
    return pid;
fail:
    saved = errno;
    if (own_pidns >= 0) close(own_pidns);
    for (int i = 0; i < NS_COUNT; i++) if (nsfds[i] >= 0) close(nsfds[i]);
    errno = saved;
    return -1;
}

pid_t ccore_spawn_pid_init(const char *path) {
    int errors[2];
    if (pipe2(errors, O_CLOEXEC) < 0) return -1;
    pid_t pid = (pid_t)syscall(SYS_clone, (unsigned long)CLONE_NEWPID | SIGCHLD, NULL, NULL, NULL, 0);
    if (pid == 0) {
        reset_signals();
        int null = open("/dev/null", O_RDWR);
        for (int i = 0; i < 3; i++) if (null >= 0 && null != i) dup2(null, i);
        if (syscall(SYS_close_range, 3, ~0U, 4 /* CLOSE_RANGE_CLOEXEC */) < 0) {
            for (int fd = 3; fd < 4096; fd++) if (fd != errors[1]) fcntl(fd, F_SETFD, FD_CLOEXEC);
        }
        char *const argv[] = {(char *)"cocoon-pause", NULL};
        char *const envp[] = {NULL};
        execve(path, argv, envp);
        int e = errno;
        if (write(errors[1], &e, sizeof e) < 0) {}
        _exit(127);
    }
    int saved = errno;
    close(errors[1]);
    if (pid < 0) {
        close(errors[0]);
        errno = saved;
        return -1;
    }
    int e = 0;
    ssize_t n;
    do n = read(errors[0], &e, sizeof e); while (n < 0 && errno == EINTR);
    close(errors[0]);
    if (n == (ssize_t)sizeof e) {
        waitpid(pid, NULL, 0);
        errno = e;
        return -1;
    }
    return pid;
}

int ccore_seccomp_export(scmp_filter_ctx ctx, void **buf, size_t *len) {
    int fd = memfd_create("seccomp-bpf", MFD_CLOEXEC);
    if (fd < 0) return -errno;
    int rc = seccomp_export_bpf(ctx, fd);
    if (rc < 0) { close(fd); return rc; }
    off_t size = lseek(fd, 0, SEEK_END);
    if (size <= 0 || lseek(fd, 0, SEEK_SET) < 0) { close(fd); return -EIO; }
    char *out = malloc((size_t)size);
    if (!out) { close(fd); return -ENOMEM; }
    size_t done = 0;
    while (done < (size_t)size) {
        ssize_t n = read(fd, out + done, (size_t)size - done);
        if (n <= 0) { free(out); close(fd); return -EIO; }
        done += (size_t)n;
    }
    close(fd);
    *buf = out;
    *len = done;
    return 0;
}

void *ccore_seccomp_program(const void *bpf, size_t len) {
    struct sock_fprog *prog = malloc(sizeof *prog + len);
    if (!prog) return NULL;
    void *copy = (char *)prog + sizeof *prog;
    memcpy(copy, bpf, len);
    prog->len = (unsigned short)(len / sizeof(struct sock_filter));
    prog->filter = copy;
    return prog;
}

// --- the device cgroup (eBPF) ------------------------------------------------------------------

#include <linux/bpf.h>

#define INSN(c, d, s, o, i) ((struct bpf_insn){.code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)})

int ccore_attach_device_filter(int cgroup_fd) {
    // Char devices a container may open: {major, minor}, minor -1 for any.
    static const int allowed[][2] = {{1, 3}, {1, 5}, {1, 7}, {1, 8}, {1, 9}, {5, 0}, {5, 2}, {136, -1}, {10, 200}};
    enum { N = sizeof(allowed) / sizeof(allowed[0]) };
    struct bpf_insn prog[16 + 4 * N];
    int n = 0;
    // r2 = access (high 16 bits of access_type), r3 = type (low 16), r4 = major, r5 = minor.
    prog[n++] = INSN(BPF_LDX | BPF_W | BPF_MEM, 2, 1, 0, 0);
    prog[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, 3, 2, 0, 0);
    prog[n++] = INSN(BPF_ALU64 | BPF_AND | BPF_K, 3, 0, 0, 0xffff);
    prog[n++] = INSN(BPF_ALU64 | BPF_RSH | BPF_K, 2, 0, 0, 16);
    prog[n++] = INSN(BPF_LDX | BPF_W | BPF_MEM, 4, 1, 4, 0);
    prog[n++] = INSN(BPF_LDX | BPF_W | BPF_MEM, 5, 1, 8, 0);
    // mknod alone (access == BPF_DEVCG_ACC_MKNOD) is allowed for any device.
    int mknod_jump = n;
    prog[n++] = INSN(BPF_JMP | BPF_JEQ | BPF_K, 2, 0, 0, BPF_DEVCG_ACC_MKNOD);  // off patched to "allow"
    int rule_jumps[N];
    for (int i = 0; i < N; i++) {
        int has_minor = allowed[i][1] >= 0;
        int skip = has_minor ? 3 : 2;  // instructions after this one up to the rule's "goto allow"
        prog[n++] = INSN(BPF_JMP | BPF_JNE | BPF_K, 3, 0, (short)(skip + 0), BPF_DEVCG_DEV_CHAR);
        prog[n++] = INSN(BPF_JMP | BPF_JNE | BPF_K, 4, 0, (short)(skip - 1), allowed[i][0]);
        if (has_minor) prog[n++] = INSN(BPF_JMP | BPF_JNE | BPF_K, 5, 0, 1, allowed[i][1]);
        rule_jumps[i] = n;
        prog[n++] = INSN(BPF_JMP | BPF_JA, 0, 0, 0, 0);  // off patched to "allow"
    }
    // deny:
    prog[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0);
    prog[n++] = INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
    int allow = n;
    prog[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 1);
    prog[n++] = INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
    prog[mknod_jump].off = (short)(allow - mknod_jump - 1);
    for (int i = 0; i < N; i++) prog[rule_jumps[i]].off = (short)(allow - rule_jumps[i] - 1);

    union bpf_attr load;
    memset(&load, 0, sizeof(load));
    load.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    load.insns = (unsigned long)prog;
    load.insn_cnt = (unsigned)n;
    load.license = (unsigned long)"Apache";
    int prog_fd = (int)syscall(SYS_bpf, BPF_PROG_LOAD, &load, sizeof(load));
    if (prog_fd < 0) return -errno;
    union bpf_attr attach;
    memset(&attach, 0, sizeof(attach));
    attach.target_fd = (unsigned)cgroup_fd;
    attach.attach_bpf_fd = (unsigned)prog_fd;
    attach.attach_type = BPF_CGROUP_DEVICE;
    attach.attach_flags = BPF_F_ALLOW_MULTI;
    int rc = (int)syscall(SYS_bpf, BPF_PROG_ATTACH, &attach, sizeof(attach));
    int err = rc < 0 ? -errno : 0;
    close(prog_fd);
    return err;
}

uint64_t ccore_bounding_set(int last_cap) {
    uint64_t mask = 0;
    for (int n = 0; n <= last_cap && n < 64; n++)
        if (prctl(PR_CAPBSET_READ, (unsigned long)n, 0, 0, 0) == 1) mask |= (uint64_t)1 << n;
    return mask;
}
