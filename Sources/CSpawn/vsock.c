#define _GNU_SOURCE
#include "cspawn.h"
#include <errno.h>
#include <linux/vm_sockets.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#ifndef SO_VM_SOCKETS_CONNECT_TIMEOUT
#define SO_VM_SOCKETS_CONNECT_TIMEOUT 6
#endif

int cocoon_vsock_connect_privileged(unsigned int cid, unsigned int port, int timeout_ms) {
    for (unsigned int local = COCOON_VSOCK_PRIVILEGED_BELOW - 1; local >= 512; local--) {
        int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return -errno;
        struct sockaddr_vm self;
        memset(&self, 0, sizeof(self));
        self.svm_family = AF_VSOCK;
        self.svm_cid = VMADDR_CID_ANY;
        self.svm_port = local;
        if (bind(fd, (struct sockaddr *)&self, sizeof(self)) != 0) {
            int err = errno;
            close(fd);
            if (err == EADDRINUSE) continue;
            return -err;
        }
        struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
        (void)setsockopt(fd, AF_VSOCK, SO_VM_SOCKETS_CONNECT_TIMEOUT, &tv, sizeof(tv));
        struct sockaddr_vm peer;
        memset(&peer, 0, sizeof(peer));
        peer.svm_family = AF_VSOCK;
        peer.svm_cid = cid;
        peer.svm_port = port;
        if (connect(fd, (struct sockaddr *)&peer, sizeof(peer)) != 0) {
            int err = errno;
            close(fd);
            return -err;
        }
        return fd;
    }
    return -EADDRINUSE;
}
