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

/// Clones the mount tree at `source_fd` (recursively), makes every mount in it nosuid and nodev with
/// the given propagation, read-only as asked (`read_only`: the top mount; `recursive_read_only`:
/// every mount), and attaches it on `target` (an existing file or directory). 0 or an errno.
int cocoon_bind_volume(int source_fd, const char *target, int read_only, int recursive_read_only, int propagation);

/// 1 when this kernel has mount_setattr (read-only applied to a whole tree), 0 otherwise.
int cocoon_has_mount_setattr(void);

#endif
