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

/// How a VM process starts: as whom, where, with which limits and descriptors.
struct cocoon_vm_launch {
    /// Descriptors the VM keeps, in order: the child has them as 3, 4, 5, ... (none close-on-exec).
    const int *keep_fds;
    int keep_count;
    /// stdout and stderr of the VM (its own error messages).
    int out_fd;
    /// The user, group and supplementary groups it runs as (all of root's capabilities are gone
    /// once it is not root; no_new_privs is set too).
    unsigned int uid, gid;
    const unsigned int *groups;
    int group_count;
    /// `cgroup.procs` files the child moves itself into before it runs anything.
    const char *const *cgroup_procs;
    int cgroup_count;
    /// RLIMIT_FSIZE in bytes (0: unchanged); SIGXFSZ is ignored, so a write past it fails with EFBIG.
    unsigned long long file_size_limit;
    /// Non-zero: in a network namespace of its own (empty: it needs none, its tap is a descriptor),
    /// a mount namespace of its own with private propagation (no mount made later reaches it; no
    /// copy of the pods' network namespace pins either), and a
    /// PID namespace of its own whose PID 1 it is, with a /proc of that namespace (no host process
    /// in sight).
    int isolate;
    /// Non-zero: SIGPIPE ignored (kept across exec), so a write to a closed pipe (a capped log whose
    /// copier stopped) fails with EPIPE instead of killing it.
    int ignore_sigpipe;
    /// Non-zero: no no_new_privs (a native pod's agent, root, whose containers may need setuid
    /// programs and file capabilities); the uid and gid are set as given.
    int keep_privileges;
    /// A mount namespace to join (a pod's, by its pin) before anything else is opened; -1: none.
    int mount_ns_fd;
};

/// fork + exec of a VM process (QEMU) in a session of its own: joins its cgroups, sets its file size
/// limit, drops to its user, keeps exactly the given descriptors, and execs `path`. The daemon
/// reaps it (`HostProcess.isAlive` does) while it lives; after a daemon restart init does.
/// Returns 0 and sets *pid, or an errno value. A failure in the child (a cgroup that cannot be
/// joined, a user that cannot be set) is written to out_fd and the child exits with 127.
int cocoon_spawn_vm(const char *path, char *const argv[], char *const envp[], const struct cocoon_vm_launch *launch,
                    pid_t *pid);

/// Sends `len` bytes and one descriptor (SCM_RIGHTS) on a Unix socket. Returns bytes sent or -1.
long cocoon_send_with_fd(int sock, const void *buf, unsigned long len, int fd);

/// openat2(2) of `path` beneath `dirfd` (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS),
/// read-only, close-on-exec, non-blocking: a symlink anywhere on the way, `..` out of dirfd, or a
/// swapped component refuses the open. Returns the descriptor or -1 with errno.
int cocoon_open_beneath(int dirfd, const char *path);

/// A memfd of `size` bytes for a VM's RAM, sealed against growing and shrinking (holes may still be
/// punched). The descriptor (close-on-exec), or -1 with errno set.
int cocoon_guest_ram(const char *name, unsigned long long size);
/// A template VM's RAM: a memfd of `size` bytes that can neither grow nor shrink, and that can
/// still be sealed against writes (`cocoon_seal_writes`) once the template VM has ended.
int cocoon_template_ram(const char *name, unsigned long long size);
/// Seals a template's RAM against every write (and every further seal): clones map it privately,
/// copy-on-write, and nothing can change it under them. 0, or -1 with errno (EBUSY: a shared
/// writable mapping of it remains).
int cocoon_seal_writes(int fd);

/// vsock source ports below this are privileged (binding one needs CAP_NET_BIND_SERVICE); the guest
/// agent accepts only the host's connections from one.
#define COCOON_VSOCK_PRIVILEGED_BELOW 1024

/// A blocking vsock stream connection to cid:port from a free privileged local port (1023 down to
/// 512), within timeout_ms; close-on-exec. The descriptor, or -errno.
int cocoon_vsock_connect_privileged(unsigned int cid, unsigned int port, int timeout_ms);

/// A pidfd for `pid` (close-on-exec): it pins the process, so what is checked about it afterwards
/// (its start time) is about this process, not one that took its pid. The fd or -errno.
int cocoon_pidfd_open(int pid);
/// Waits until the pidfd's process has exited or `timeout_ms` passed (no polling): 1 when it exited
/// (a child of ours is not yet reaped), 0 on timeout, -errno on failure.
int cocoon_pidfd_wait(int pidfd, int timeout_ms);
/// `cocoon_pidfd_wait` on a fresh pidfd of `pid`; -errno when none can be had (callers poll instead).
int cocoon_wait_exit(int pid, int timeout_ms);
