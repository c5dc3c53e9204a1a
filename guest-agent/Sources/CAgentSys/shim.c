#define _GNU_SOURCE
#include "cagentsys.h"
#include <linux/vm_sockets.h>
#include <net/if.h>
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
