// The part of container creation that runs in the new process between clone() and execve().
// Everything is prepared by the caller (ContainerCore, in Swift) into flat C data, so the child
// needs no allocation and is safe to start from a multi-threaded process.
#pragma once
#include <stdint.h>
#include <sys/types.h>
#include <seccomp.h>

/// One mount made inside the container before pivot_root. `target` is an absolute host path
/// already resolved inside the root filesystem.
struct ccore_mount {
    const char *source;
    const char *target;
    const char *fstype;   // NULL for a bind mount
    const char *data;
    unsigned long flags;
    int bind;             // 1: bind mount (MS_BIND|MS_REC), remounted read-only when `readonly`
    int readonly;
    int target_is_file;   // create the target as an empty file (bind of a file) instead of a dir
};

/// What the new process does. `join_pid` > 0 means "exec into that container": join its mount,
/// UTS, IPC and PID namespaces and skip all filesystem setup.
struct ccore_spawn {
    int new_namespaces;              // 1: new mount, PID, IPC and UTS namespaces (network is shared)
    int share_ipc;                   // with new_namespaces: keep the caller's IPC namespace (the pod's)
    int share_pid;                   // with new_namespaces: keep the caller's PID namespace (the node's)
    pid_t join_pidns_of;             // with new_namespaces, > 0: be born in that process's PID namespace
                                     // (the pod's pause, or another container's) instead of a new one
    pid_t join_pid;
    const char *rootfs;              // absolute path (create mode)
    int readonly_rootfs;
    int setup_dev;                   // mount a tmpfs /dev with the standard nodes, pts, shm, mqueue
    int mount_proc_sys;              // mount /proc and a read-only /sys
    const char *hostname;            // NULL: keep
    const struct ccore_mount *mounts;
    int n_mounts;
    const char *const *masked_paths;   // inside the container, after pivot_root
    int n_masked;
    const char *const *readonly_paths;
    int n_readonly;
    const char *cwd;
    const char *const *argv;         // NULL-terminated
    const char *const *envp;         // NULL-terminated
    const char *path_env;            // PATH used to find argv[0] when it has no '/'
    uid_t uid;
    gid_t gid;
    const gid_t *groups;
    int n_groups;
    uint64_t capabilities;           // bounding/permitted/effective/inheritable set (bit = cap number)
    int no_new_privs;
    const void *seccomp_filter;      // struct sock_fprog*, or NULL
    int stdio[3];                    // -1: /dev/null
    int sync_fd;                     // child reads one byte before setup (parent placed it in its cgroup)
    int error_fd;                    // child writes "step: strerror" here on failure (close-on-exec)
    int last_cap;                    // highest capability number the kernel knows
    int controlling_tty;             // 1: stdin is a terminal: new session, stdin its controlling tty
    int console_socket;              // -1, or a socket: the child opens a terminal in the container's own
                                     // devpts (after its /dev is set up), sends the master over it
                                     // (SCM_RIGHTS), and makes the terminal its stdio and controlling tty
};

/// Starts the process described by `spec`. Returns its pid (in the caller's PID namespace), or -1
/// with errno set when clone itself failed. Setup errors are reported on `error_fd` by the child.
pid_t ccore_spawn(const struct ccore_spawn *spec);

/// Starts `path` (a pause program, run with no arguments and no environment) as PID 1 of a new PID
/// namespace, stdio on /dev/null, every other fd closed. Returns its pid, or -1 with errno set
/// (clone failed, or the exec did: that errno).
pid_t ccore_spawn_pid_init(const char *path);

/// Receives one fd sent with SCM_RIGHTS on `socket` (close-on-exec), without waiting. Returns it, or
/// -1 with errno set.
int ccore_recv_fd(int socket);

/// pipe2(fds, O_CLOEXEC).
int ccore_pipe(int fds[2]);

/// pivot_root(2), which glibc does not wrap.
int ccore_pivot_root(const char *new_root, const char *put_old);

/// Writes the BPF program of a libseccomp filter into a malloc'd buffer (*buf, *len; free() it).
/// Returns 0 or a negative errno.
int ccore_seccomp_export(scmp_filter_ctx ctx, void **buf, size_t *len);

/// The capabilities in the calling thread's bounding set up to `last_cap` (bit n = capability n).
uint64_t ccore_bounding_set(int last_cap);

/// Wraps a BPF program (from ccore_seccomp_export) as the struct sock_fprog prctl expects; malloc'd.
void *ccore_seccomp_program(const void *bpf, size_t len);

/// Attaches runc's default device allow-list to a cgroup v2 directory (an eBPF cgroup-device
/// program): any device may be created (mknod), but only /dev/null, zero, full, random, urandom,
/// tty, ptmx, the pty slaves and /dev/net/tun may be opened. Returns 0 or -errno.
int ccore_attach_device_filter(int cgroup_fd);
