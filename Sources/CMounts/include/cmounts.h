#ifndef COCOON_CMOUNTS_H
#define COCOON_CMOUNTS_H

// The new mount API (open_tree, mount_setattr, move_mount) for pod volumes on the host: a volume's
// source is cloned as a detached mount, given its attributes while nobody can see it, and only then
// attached under the pod's shared directory.

/// Propagation of a cloned volume.
enum cocoon_propagation { COCOON_PROPAGATION_PRIVATE = 0, COCOON_PROPAGATION_SLAVE = 1 };

/// Opens `name` in the directory `dir_fd` as an O_PATH descriptor without following a symlink in
/// that last component. The descriptor, or -errno (-ELOOP for a symlink).
int cocoon_open_path_nofollow(int dir_fd, const char *name);

/// Opens the directory `path` as an O_PATH descriptor, following symlinks but never a /proc magic
/// link (`/proc/PID/root`, `/proc/self/fd/N`: a way into other namespaces' files), with openat2.
/// The descriptor, or -errno (-ELOOP for a magic link).
int cocoon_open_directory_path(const char *path);

/// Opens `path` as an O_PATH descriptor, following symlinks (the last component's too) but never a
/// magic link. The descriptor, or -errno.
int cocoon_open_path_following(const char *path);

/// The path the kernel has for `fd` (readlink of /proc/self/fd/N) into `out` (NUL-terminated), or
/// -errno; -ENAMETOOLONG when it does not fit, -ENOENT for a deleted file.
int cocoon_descriptor_path(int fd, char *out, int size);

/// Clones the mount tree at `source_fd` (recursively) as a detached tree, every mount in it nosuid
/// and nodev with the given propagation, read-only as asked (`read_only`: the top mount;
/// `recursive_read_only`: every mount). Its descriptor (dissolved with its last close unless
/// attached), or -errno.
int cocoon_volume_tree(int source_fd, int read_only, int recursive_read_only, int propagation);

/// Makes a pod's mount namespace: a copy of the host's, slave to it (host mounts and unmounts reach
/// it; nothing reaches the host), with `mounts_dir` a shared mount of its own and `export_dir` a
/// read-only, nosuid, nodev slave of it; the namespace is pinned by a bind of its nsfs file on
/// `pin` (created; its parent must not be a shared mount). 0 or an errno.
int cocoon_pod_mount_namespace(const char *pin, const char *mounts_dir, const char *export_dir);

/// Attaches the detached tree `tree_fd` on `target` (made as a directory or a file, a leftover of
/// the other kind replaced) in the mount namespace `ns_fd` (-1: the caller's). 0, EEXIST when
/// something is mounted on `target` already (nothing is changed), or an errno.
int cocoon_attach_tree(int ns_fd, int tree_fd, const char *target, int is_dir);

/// Detaches everything mounted on `target` in the mount namespace `ns_fd` (-1: the caller's) and
/// removes the mount point (never anything below it). 0 or an errno.
int cocoon_detach_tree(int ns_fd, const char *target);

/// 1 when `path` is the root of a mount in the mount namespace `ns_fd` (-1: the caller's).
int cocoon_is_mount_root(int ns_fd, const char *path);

/// 1 when this kernel has mount_setattr (read-only applied to a whole tree), 0 otherwise.
int cocoon_has_mount_setattr(void);

#endif
