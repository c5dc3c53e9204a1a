#define _GNU_SOURCE
#include "cagentsys.h"
#include <linux/vm_sockets.h>
#include <linux/random.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <termios.h>
#include <net/if.h>
#include <sys/io.h>
#include <sys/ioctl.h>
#include <signal.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

int cocoon_finit_module(int fd) { return (int)syscall(SYS_finit_module, fd, "", 0); }

int cocoon_vsock_listen(unsigned int port, int backlog) {
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_vm addr;
    memset(&addr, 0, sizeof(addr));
    addr.svm_family = AF_VSOCK;
    addr.svm_cid = VMADDR_CID_ANY;
    addr.svm_port = port;
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, backlog) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int cocoon_accept(int listen_fd) { return accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK); }

int cocoon_accept_vsock(int listen_fd, unsigned int *cid, unsigned int *port) {
    struct sockaddr_vm peer;
    socklen_t size = sizeof(peer);
    memset(&peer, 0, sizeof(peer));
    int fd = accept4(listen_fd, (struct sockaddr *)&peer, &size, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0) {
        *cid = peer.svm_cid;
        *port = peer.svm_port;
    }
    return fd;
}

int cocoon_sigchld_fd(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0) return -1;
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

void cocoon_drain_signalfd(int fd) {
    struct signalfd_siginfo info;
    while (read(fd, &info, sizeof(info)) > 0) {}
}

unsigned long long cocoon_boottime_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

int cocoon_poweroff(void) { return reboot(RB_POWER_OFF); }

void cocoon_kernel_release(char *buf, int size) {
    struct utsname u;
    if (size <= 0) return;
    buf[0] = 0;
    if (uname(&u) == 0) { strncpy(buf, u.release, (size_t)size - 1); buf[size - 1] = 0; }
}

int cocoon_loopback_up(void) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    int rc = ioctl(fd, SIOCGIFFLAGS, &ifr);
    if (rc == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        rc = ioctl(fd, SIOCSIFFLAGS, &ifr);
    }
    close(fd);
    return rc;
}

int cocoon_open_pty(const char *ptmx, int *master, int *slave) {
    int m = open(ptmx, O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
    if (m < 0) return -1;
    int unlock = 0;
    if (ioctl(m, TIOCSPTLCK, &unlock) < 0) { close(m); return -1; }
    int s = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s < 0) { close(m); return -1; }
    *master = m;
    *slave = s;
    return 0;
}

int cocoon_set_winsize(int fd, unsigned short rows, unsigned short cols) {
    struct winsize ws = {.ws_row = rows, .ws_col = cols};
    return ioctl(fd, TIOCSWINSZ, &ws);
}

int cocoon_connect_loopback(unsigned int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -errno;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int cocoon_socket_error(int fd) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return errno;
    return err;
}

long cocoon_send(int fd, const void *buf, unsigned long len) { return send(fd, buf, len, MSG_NOSIGNAL); }

// QEMU fw_cfg on x86: a 16-bit selector port and an 8-bit data port. Entry 0x19 is the file
// directory: a big-endian count, then per file a big-endian size and selector and a 56-byte name.
#define FW_CFG_PORT_SEL 0x510
#define FW_CFG_PORT_DATA 0x511
#define FW_CFG_FILE_DIR 0x19

static void fwcfg_read_bytes(unsigned char *out, int n) {
    for (int i = 0; i < n; i++) out[i] = inb(FW_CFG_PORT_DATA);
}

int cocoon_fwcfg_read(const char *name, unsigned char *buf, int size) {
    if (ioperm(FW_CFG_PORT_SEL, 2, 1) != 0) return -2;
    // The signature entry (selector 0) reads "QEMU" where there is a fw_cfg device.
    unsigned char signature[4];
    outw(0, FW_CFG_PORT_SEL);
    fwcfg_read_bytes(signature, 4);
    int result = -2;
    if (memcmp(signature, "QEMU", 4) == 0) {
        result = -1;
        unsigned char word[4];
        outw(FW_CFG_FILE_DIR, FW_CFG_PORT_SEL);
        fwcfg_read_bytes(word, 4);
        unsigned count = (unsigned)word[0] << 24 | (unsigned)word[1] << 16 | (unsigned)word[2] << 8 | word[3];
        for (unsigned i = 0; i < count && i < 4096; i++) {
            unsigned char entry[64];
            fwcfg_read_bytes(entry, 64);
            unsigned fsize = (unsigned)entry[0] << 24 | (unsigned)entry[1] << 16 | (unsigned)entry[2] << 8 | entry[3];
            unsigned short select = (unsigned short)(entry[4] << 8 | entry[5]);
            entry[63] = 0;
            if (strcmp((const char *)entry + 8, name) != 0) continue;
            outw(select, FW_CFG_PORT_SEL);
            int n = fsize < (unsigned)size ? (int)fsize : size;
            fwcfg_read_bytes(buf, n);
            result = fsize > 0x7fffffff ? 0x7fffffff : (int)fsize;
            break;
        }
    }
    ioperm(FW_CFG_PORT_SEL, 2, 0);
    return result;
}

int cocoon_reseed_random(const unsigned char *bytes, int size) {
    if (size <= 0 || size > 512) return -EINVAL;
    unsigned int words[2 + 512 / sizeof(unsigned int)];
    struct rand_pool_info *pool = (struct rand_pool_info *)words;
    pool->entropy_count = size * 8;
    pool->buf_size = size;
    memcpy(pool->buf, bytes, (size_t)size);
    int fd = open("/dev/urandom", O_RDWR | O_CLOEXEC);
    if (fd < 0) return -errno;
    int rc = 0;
    if (ioctl(fd, RNDADDENTROPY, pool) != 0 || ioctl(fd, RNDRESEEDCRNG) != 0) rc = -errno;
    close(fd);
    return rc;
}

#include <sched.h>
#include <sys/mount.h>

int cocoon_enter_pod(const char *netns_path, int host_ipc, const char **step) {
    if (netns_path) {
        *step = "open the network namespace";
        int fd = open(netns_path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) return -errno;
        *step = "setns(CLONE_NEWNET)";
        int rc = setns(fd, CLONE_NEWNET);
        int err = errno;
        close(fd);
        if (rc != 0) return -err;
    }
    *step = host_ipc ? "unshare(CLONE_NEWNS | CLONE_NEWUTS)" : "unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC)";
    if (unshare(CLONE_NEWNS | CLONE_NEWUTS | (host_ipc ? 0 : CLONE_NEWIPC)) != 0) return -errno;
    *step = "make / rslave";
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) != 0) return -errno;
    return 0;
}

int cocoon_accept_root(int listen_fd, unsigned int *uid, int *pid) {
    int conn = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (conn < 0) return -1;
    struct ucred cred;
    socklen_t size = sizeof(cred);
    if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &size) != 0 || cred.uid != 0) {
        *uid = size == sizeof(cred) ? cred.uid : (unsigned int)-1;
        *pid = size == sizeof(cred) ? cred.pid : -1;
        close(conn);
        return -2;
    }
    return conn;
}
