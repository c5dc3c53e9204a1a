#define _GNU_SOURCE
#include "cmounts.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

// Values of <sys/mount.h>, which cannot be included beside <linux/mount.h>.
#define COCOON_MS_PRIVATE (1 << 18)
#define COCOON_MS_SLAVE (1 << 19)

struct cocoon_mount_attr {
    uint64_t attr_set;
    uint64_t attr_clr;
    uint64_t propagation;
    uint64_t userns_fd;
};

static int setattr(int fd, unsigned int flags, uint64_t set, uint64_t propagation) {
    struct cocoon_mount_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.attr_set = set;
    attr.propagation = propagation;
    return (int)syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH | flags, &attr, sizeof(attr));
}

int cocoon_open_path_nofollow(int dir_fd, const char *name) {
    int fd = openat(dir_fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -errno;
    return fd;
}

static int open_no_magic(const char *path, uint64_t flags) {
    struct open_how how;
    memset(&how, 0, sizeof(how));
    how.flags = flags | O_PATH | O_CLOEXEC;
    how.resolve = RESOLVE_NO_MAGICLINKS;
    int fd = (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));
    if (fd < 0) return -errno;
    return fd;
}

int cocoon_open_directory_path(const char *path) { return open_no_magic(path, O_DIRECTORY); }

int cocoon_open_path_following(const char *path) { return open_no_magic(path, 0); }

int cocoon_descriptor_path(int fd, char *out, int size) {
    char link[64];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, out, (size_t)size);
    if (n < 0) return -errno;
    if (n >= size) return -ENAMETOOLONG;
    out[n] = 0;
    // A deleted file's link reads "<path> (deleted)": nothing to check a path against.
    if (n >= 10 && strcmp(out + n - 10, " (deleted)") == 0) return -ENOENT;
    return 0;
}

int cocoon_volume_tree(int source_fd, int read_only, int recursive_read_only, int propagation) {
    int tree = (int)syscall(SYS_open_tree, source_fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE);
    if (tree < 0) return -errno;
    uint64_t set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (recursive_read_only ? MOUNT_ATTR_RDONLY : 0);
    uint64_t prop = propagation == COCOON_PROPAGATION_SLAVE ? COCOON_MS_SLAVE : COCOON_MS_PRIVATE;
    if (setattr(tree, AT_RECURSIVE, set, prop) != 0 ||
        (read_only && !recursive_read_only && setattr(tree, 0, MOUNT_ATTR_RDONLY, 0) != 0)) {
        int err = errno;
        close(tree);  // a tree never attached is dissolved with its last descriptor
        return -err;
    }
    return tree;
}

int cocoon_has_mount_setattr(void) {
    errno = 0;
    long rc = syscall(SYS_mount_setattr, -1, "", AT_EMPTY_PATH, NULL, 0);
    return (rc == 0 || errno != ENOSYS) ? 1 : 0;
}
