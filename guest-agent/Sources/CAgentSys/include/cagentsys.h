// System calls the guest agent needs that Swift cannot reach directly (variadic or macro-only APIs).
#pragma once

/// finit_module(2) on an open .ko file. Returns 0 or -1 with errno.
int cocoon_finit_module(int fd);
/// A listening AF_VSOCK stream socket on VMADDR_CID_ANY:port, or -1 with errno.
int cocoon_vsock_listen(unsigned int port, int backlog);
/// Accepts a connection as non-blocking and close-on-exec, or -1 with errno.
int cocoon_accept(int listen_fd);
/// Accepts a vsock connection (non-blocking, close-on-exec) and reports the peer's CID and port.
int cocoon_accept_vsock(int listen_fd, unsigned int *cid, unsigned int *port);
/// Blocks SIGCHLD and returns a non-blocking signalfd that reports it, or -1.
int cocoon_sigchld_fd(void);
/// Drains a signalfd.
void cocoon_drain_signalfd(int fd);
/// CLOCK_BOOTTIME in nanoseconds: time since the guest kernel started.
unsigned long long cocoon_boottime_ns(void);
/// reboot(RB_POWER_OFF).
int cocoon_poweroff(void);
/// The kernel release (uname -r) into buf.
void cocoon_kernel_release(char *buf, int size);
/// Brings the loopback interface up (containers of a pod talk over localhost). 0 or -1 with errno.
int cocoon_loopback_up(void);
/// Opens a terminal pair from a devpts `ptmx` (non-blocking master, close-on-exec both). 0 or -1 with errno.
int cocoon_open_pty(const char *ptmx, int *master, int *slave);
/// TIOCSWINSZ. 0 or -1 with errno.
int cocoon_set_winsize(int fd, unsigned short rows, unsigned short cols);
/// A non-blocking TCP connection to 127.0.0.1:port, maybe still in progress; the fd or -errno.
int cocoon_connect_loopback(unsigned int port);
/// SO_ERROR of a socket: 0 once connected, the errno of a failed connect.
int cocoon_socket_error(int fd);
/// send(2) with MSG_NOSIGNAL.
long cocoon_send(int fd, const void *buf, unsigned long len);
/// Reads the QEMU fw_cfg file `name` (e.g. "opt/io.cocoon/agent-token") through the x86 I/O ports
/// into buf: its size (which may exceed `size`; only `size` bytes are copied), -1 when fw_cfg has no
/// such file, -2 when the ports cannot be reached (no fw_cfg device, or no CAP_SYS_RAWIO).
int cocoon_fwcfg_read(const char *name, unsigned char *buf, int size);
/// Adds `size` bytes (at most 512) to the kernel's entropy pool, credited in full, and reseeds its
/// random generator from the pool at once (RNDADDENTROPY, RNDRESEEDCRNG). 0, or -errno.
int cocoon_reseed_random(const unsigned char *bytes, int size);
/// The hung-request detector: a thread that says on the console what the agent is stuck in, where
/// the kernel holds it and its children, and the kernel's last messages, every `seconds` until
/// disarmed, written to `fd` (the console: 2). Installed before anything blocks signals; a second
/// call only changes `fd`.
void cocoon_watchdog_install(int fd);
/// Starts watching `what` (copied; at most 159 bytes).
void cocoon_watchdog_arm(const char *what, unsigned seconds);
void cocoon_watchdog_disarm(void);
/// A native pod's agent on the host enters its pod: the network namespace of `netns_path` (NULL:
/// the host's stays), then new mount, UTS and (unless `host_ipc`) IPC namespaces, with every mount
/// a slave of the host's (host mounts reach the pod, the pod's never reach the host).
/// Single-threaded callers only. 0, or -errno (and `*step` names what failed).
int cocoon_enter_pod(const char *netns_path, int host_ipc, const char **step);
/// accept4 (close-on-exec, non-blocking) of a Unix socket connection whose peer is uid 0; another
/// peer is closed at once and -2 returned with its uid and pid in *uid, *pid. -1 with errno when
/// nothing could be accepted.
int cocoon_accept_root(int listen_fd, unsigned int *uid, int *pid);
