// Starting host helpers (QEMU, mkfs.erofs, ...) with exactly the descriptors they are meant to have.
#pragma once
#include <sys/types.h>

/// posix_spawn of `path` with stdin, stdout and stderr set to the given descriptors (-1: /dev/null)
/// and every other descriptor of the daemon closed in the child (the CRI socket, gRPC connections,
/// state files, other VMs' sockets), whether or not it was opened close-on-exec.
/// Returns 0 and sets *pid, or an errno value.
int cocoon_spawn(const char *path, char *const argv[], char *const envp[], int in_fd, int out_fd, int err_fd, pid_t *pid);

/// Sets FD_CLOEXEC on `fd`; returns 0 or -1.
int cocoon_set_cloexec(int fd);
