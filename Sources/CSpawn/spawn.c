#define _GNU_SOURCE
#include "cspawn.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

int cocoon_spawn(const char *path, char *const argv[], char *const envp[], int in_fd, int out_fd, int err_fd, pid_t *pid) {
    posix_spawn_file_actions_t actions;
    int rc = posix_spawn_file_actions_init(&actions);
    if (rc != 0) return rc;
    const int fds[3] = {in_fd, out_fd, err_fd};
    for (int i = 0; i < 3 && rc == 0; i++) {
        if (fds[i] < 0)
            rc = posix_spawn_file_actions_addopen(&actions, i, "/dev/null", i == 0 ? O_RDONLY : O_WRONLY, 0);
        else
            rc = posix_spawn_file_actions_adddup2(&actions, fds[i], i);
    }
    // glibc >= 2.34: close_range(3, ~0) in the child, after the dup2s above.
    if (rc == 0) rc = posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    posix_spawnattr_t attr;
    if (rc == 0) rc = posix_spawnattr_init(&attr);
    if (rc == 0) {
        // The daemon blocks or ignores signals for its own reasons; a child starts clean.
        sigset_t none, all;
        sigemptyset(&none);
        sigfillset(&all);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setsigdefault(&attr, &all);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        rc = posix_spawn(pid, path, &actions, &attr, argv, envp);
        posix_spawnattr_destroy(&attr);
    }
    posix_spawn_file_actions_destroy(&actions);
    return rc;
}

int cocoon_set_cloexec(int fd) {
    int flags = fcntl(fd, F_GETFD);
    return flags < 0 ? -1 : fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

// Only raw system calls between fork and exec: the daemon is multi-threaded, and the child must not
// touch a lock another thread held at the fork.
static void child_fail(int fd, const char *what) {
    int e = errno;
    char num[16];
    int n = 0;
    do {
        num[sizeof(num) - 1 - n++] = (char)('0' + e % 10);
        e /= 10;
    } while (e > 0 && n < 15);
    const char *prefix = "cocoon: cannot start the VM process: ";
    (void)!write(fd, prefix, strlen(prefix));
    (void)!write(fd, what, strlen(what));
    (void)!write(fd, ": errno ", 8);
    (void)!write(fd, num + sizeof(num) - n, (size_t)n);
    (void)!write(fd, "\n", 1);
    _exit(127);
}

int cocoon_spawn_vm(const char *path, char *const argv[], char *const envp[], const struct cocoon_vm_launch *l,
                    pid_t *pid) {
    // An isolated VM process is PID 1 of a PID namespace of its own (it sees no host process); the
    // raw clone is fork's equivalent here (the child calls only system calls until it execs).
    pid_t child = l->isolate ? (pid_t)syscall(SYS_clone, SIGCHLD | CLONE_NEWPID, NULL, NULL, NULL, 0) : fork();
    if (child < 0) return errno;
    if (child > 0) {
        *pid = child;
        return 0;
    }
    // The child.
    int out = l->out_fd;
    char digits[24];
    int n = 0;
    pid_t self = (pid_t)syscall(SYS_getpid);
    char rev[24];
    int r = 0;
    do {
        rev[r++] = (char)('0' + self % 10);
        self /= 10;
    } while (self > 0);
    while (r > 0) digits[n++] = rev[--r];
    for (int i = 0; i < l->cgroup_count; i++) {
        int fd = open(l->cgroup_procs[i], O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, digits, (size_t)n) != n) child_fail(out, l->cgroup_procs[i]);
        close(fd);
    }
    if (l->mount_ns_fd >= 0 && setns(l->mount_ns_fd, CLONE_NEWNS) != 0) child_fail(out, "setns(the pod's mount namespace)");
    if (setsid() < 0) child_fail(out, "setsid");
    // The daemon's umask is 077; a VM process (virtiofsd creating the guest's files) gets the usual 022.
    umask(022);
    if (l->file_size_limit > 0) {
        struct rlimit lim = {l->file_size_limit, l->file_size_limit};
        if (setrlimit(RLIMIT_FSIZE, &lim) != 0) child_fail(out, "setrlimit(RLIMIT_FSIZE)");
    }
    // Default dispositions and an empty mask, except SIGXFSZ: ignored (kept across exec), so a write
    // past the file size limit fails instead of killing the VM.
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++) sigaction(s, &dfl, NULL);
    struct sigaction ign = dfl;
    ign.sa_handler = SIG_IGN;
    sigaction(SIGXFSZ, &ign, NULL);
    if (l->ignore_sigpipe) sigaction(SIGPIPE, &ign, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (l->isolate) {
        if (unshare(CLONE_NEWNET | CLONE_NEWNS) != 0) child_fail(out, "unshare(CLONE_NEWNET | CLONE_NEWNS)");
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) child_fail(out, "mount / private");
        // The copies of pods' network namespace pins would keep those namespaces alive (now
        // private, the host's unmounts no longer reach them) for as long as this process runs.
        umount2("/var/run/netns", MNT_DETACH);
        // Its /proc shows its own PID namespace (itself), not the host's processes.
        if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) child_fail(out, "mount /proc");
    }
    // Descriptors: move the kept ones out of the way, then down to 3, 4, ...; close the rest.
    int high[64];
    if (l->keep_count > 64) {
        errno = EMFILE;
        child_fail(out, "keep_fds");
    }
    int out_high = fcntl(out, F_DUPFD, 1000);
    if (out_high < 0) child_fail(out, "dup");
    for (int i = 0; i < l->keep_count; i++) {
        high[i] = fcntl(l->keep_fds[i], F_DUPFD, 1100);
        if (high[i] < 0) child_fail(out, "dup");
    }
    int null = open("/dev/null", O_RDONLY);
    if (null < 0 || dup2(null, 0) < 0 || dup2(out_high, 1) < 0 || dup2(out_high, 2) < 0) child_fail(out_high, "stdio");
    for (int i = 0; i < l->keep_count; i++) {
        if (dup2(high[i], 3 + i) < 0) child_fail(2, "dup2");
    }
    if (syscall(SYS_close_range, 3 + l->keep_count, ~0U, 0) != 0) child_fail(2, "close_range");
    // The user last: as root it could still do all of the above. Raw calls: only this thread exists.
    if (syscall(SYS_setgroups, l->group_count, l->groups) != 0) child_fail(2, "setgroups");
    if (syscall(SYS_setresgid, l->gid, l->gid, l->gid) != 0) child_fail(2, "setresgid");
    if (syscall(SYS_setresuid, l->uid, l->uid, l->uid) != 0) child_fail(2, "setresuid");
    if (!l->keep_privileges && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) child_fail(2, "no_new_privs");
    execve(path, argv, envp);
    child_fail(2, path);
    return 0;
}

long cocoon_send_with_fd(int sock, const void *buf, unsigned long len, int fd) {
    struct iovec iov = {(void *)buf, len};
    char control[CMSG_SPACE(sizeof(int))];
    memset(control, 0, sizeof(control));
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
    return (long)sendmsg(sock, &msg, MSG_NOSIGNAL);
}

#include <linux/openat2.h>

int cocoon_open_beneath(int dirfd, const char *path) {
    struct open_how how;
    memset(&how, 0, sizeof(how));
    how.flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

int cocoon_guest_ram(const char *name, unsigned long long size) {
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return -1;
    if (ftruncate(fd, (off_t)size) != 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

int cocoon_template_ram(const char *name, unsigned long long size) {
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return -1;
    if (ftruncate(fd, (off_t)size) != 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

int cocoon_seal_writes(int fd) { return fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SEAL); }

int cocoon_pidfd_open(int pid) {
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    return fd < 0 ? -errno : fd;
}

int cocoon_pidfd_wait(int pidfd, int timeout_ms) {
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    int rc;
    do {
        rc = poll(&p, 1, timeout_ms);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0) return -errno;
    return rc > 0 ? 1 : 0;
}

int cocoon_wait_exit(int pid, int timeout_ms) {
    int fd = cocoon_pidfd_open(pid);
    if (fd < 0) return fd;
    int rc = cocoon_pidfd_wait(fd, timeout_ms);
    close(fd);
    return rc;
}
