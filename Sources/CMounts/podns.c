#define _GNU_SOURCE
#include "cmounts.h"

// A pod's own mount namespace, where its volumes' binds live (none of them is in the host's, so
// none can keep a host directory busy), held by a bind of its nsfs file (a pin) rather than by a
// process, and entered by short-lived forked children (a threaded process cannot join one).

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef STATX_ATTR_MOUNT_ROOT
#define STATX_ATTR_MOUNT_ROOT 0x00002000
#endif

// Runs `op` in the mount namespace `ns_fd` (a forked child that joins it: a threaded process
// cannot) or, with ns_fd < 0, here. The child calls only system calls and ends with the errno.
static int in_namespace(int ns_fd, int (*op)(const void *), const void *arg) {
    if (ns_fd < 0) return op(arg);
    pid_t child = fork();
    if (child < 0) return errno;
    if (child == 0) {
        if (setns(ns_fd, CLONE_NEWNS) != 0) _exit(errno & 0xff);
        _exit(op(arg) & 0xff);
    }
    int status = 0;
    while (waitpid(child, &status, 0) < 0) {
        if (errno != EINTR) return errno;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : EIO;
}

static int is_mount_root(const char *path) {
    struct statx st;
    memset(&st, 0, sizeof(st));
    if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_TYPE, &st) != 0) return 0;
    return (st.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) && (st.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

struct attach_args {
    int tree_fd;
    const char *target;
    int is_dir;
};

static int attach_op(const void *raw) {
    const struct attach_args *a = raw;
    if (is_mount_root(a->target)) return EEXIST;
    struct stat st;
    if (lstat(a->target, &st) == 0 && (S_ISDIR(st.st_mode) != (a->is_dir != 0) || S_ISLNK(st.st_mode))) {
        // A leftover of another kind (a crash between making it and binding): never anything below.
        if ((S_ISDIR(st.st_mode) ? rmdir(a->target) : unlink(a->target)) != 0) return errno;
    }
    if (a->is_dir) {
        if (mkdir(a->target, 0755) != 0 && errno != EEXIST) return errno;
    } else {
        int fd = open(a->target, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0) return errno;
        close(fd);
    }
    if (syscall(SYS_move_mount, a->tree_fd, "", AT_FDCWD, a->target, MOVE_MOUNT_F_EMPTY_PATH) != 0) {
        int err = errno;
        if (a->is_dir) rmdir(a->target); else unlink(a->target);
        return err;
    }
    return 0;
}

int cocoon_attach_tree(int ns_fd, int tree_fd, const char *target, int is_dir) {
    struct attach_args a = {tree_fd, target, is_dir};
    return in_namespace(ns_fd, attach_op, &a);
}

static int detach_op(const void *raw) {
    const char *target = raw;
    for (int rounds = 0; rounds < 16 && is_mount_root(target); rounds++) {
        if (umount2(target, MNT_DETACH) != 0) return errno;
    }
    if (is_mount_root(target)) return EBUSY;
    struct stat st;
    if (lstat(target, &st) != 0) return errno == ENOENT ? 0 : errno;
    if ((S_ISDIR(st.st_mode) ? rmdir(target) : unlink(target)) != 0) return errno;
    return 0;
}

int cocoon_detach_tree(int ns_fd, const char *target) { return in_namespace(ns_fd, detach_op, target); }

static int mounted_op(const void *raw) { return is_mount_root(raw) ? EEXIST : 0; }

int cocoon_is_mount_root(int ns_fd, const char *path) { return in_namespace(ns_fd, mounted_op, path) == EEXIST; }

int cocoon_pod_mount_namespace(const char *pin, const char *mounts_dir, const char *export_dir) {
    int ready[2], release[2];
    if (pipe2(ready, O_CLOEXEC) != 0) return errno;
    if (pipe2(release, O_CLOEXEC) != 0) {
        int err = errno;
        close(ready[0]);
        close(ready[1]);
        return err;
    }
    pid_t child = fork();
    if (child < 0) {
        int err = errno;
        close(ready[0]), close(ready[1]), close(release[0]), close(release[1]);
        return err;
    }
    if (child == 0) {
        close(ready[0]);
        close(release[1]);
        int err = 0;
        // Host mounts and unmounts reach the pod's namespace; nothing made in it reaches the host.
        if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) != 0 ||
            mount(mounts_dir, mounts_dir, NULL, MS_BIND, NULL) != 0 ||
            mount(NULL, mounts_dir, NULL, MS_PRIVATE, NULL) != 0 || mount(NULL, mounts_dir, NULL, MS_SHARED, NULL) != 0 ||
            mount(mounts_dir, export_dir, NULL, MS_BIND, NULL) != 0 ||
            mount(NULL, export_dir, NULL, MS_SLAVE, NULL) != 0 ||
            mount(NULL, export_dir, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) != 0) {
            err = errno;
        }
        if (write(ready[1], &err, sizeof(err)) != sizeof(err)) _exit(1);
        char byte;
        while (read(release[0], &byte, 1) < 0 && errno == EINTR) {}
        _exit(0);
    }
    close(ready[1]);
    close(release[0]);
    int err = 0;
    ssize_t n;
    while ((n = read(ready[0], &err, sizeof(err))) < 0 && errno == EINTR) {}
    if (n != sizeof(err)) err = err ? err : ECHILD;
    if (err == 0) {
        char ns[64];
        snprintf(ns, sizeof(ns), "/proc/%d/ns/mnt", (int)child);
        int fd = open(pin, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0 || mount(ns, pin, NULL, MS_BIND, NULL) != 0) err = errno;
        if (fd >= 0) close(fd);
    }
    close(ready[0]);
    close(release[1]);  // the child ends: the pin holds the namespace from now on
    int status;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {}
    return err;
}
