#define _GNU_SOURCE
#include "cnetns.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/magic.h>
#include <linux/netlink.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

enum job_kind { JOB_CREATE, JOB_SOCKET, JOB_TAP };

struct job {
    enum job_kind kind;
    const char *path;
    int netns_fd;
    int domain, type, protocol;
    int result;
};

static void *run_job(void *arg) {
    struct job *job = arg;
    if (job->kind == JOB_CREATE) {
        if (unshare(CLONE_NEWNET) != 0) {
            job->result = errno;
            return NULL;
        }
        char self[64];
        snprintf(self, sizeof(self), "/proc/self/task/%ld/ns/net", (long)syscall(SYS_gettid));
        job->result = mount(self, job->path, "none", MS_BIND, NULL) == 0 ? 0 : errno;
        return NULL;
    }
    if (setns(job->netns_fd, CLONE_NEWNET) != 0) {
        job->result = -errno;
        return NULL;
    }
    if (job->kind == JOB_SOCKET) {
        int fd = socket(job->domain, job->type | SOCK_CLOEXEC, job->protocol);
        job->result = fd >= 0 ? fd : -errno;
        return NULL;
    }
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        job->result = -errno;
        return NULL;
    }
    struct ifreq req;
    memset(&req, 0, sizeof(req));
    req.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    strncpy(req.ifr_name, job->path, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &req) != 0) {
        job->result = -errno;
        close(fd);
        return NULL;
    }
    job->result = fd;
    return NULL;
}

// The thread ends after its one job: a thread that entered another namespace is never reused.
static int on_thread(struct job *job) {
    pthread_t thread;
    int rc = pthread_create(&thread, NULL, run_job, job);
    if (rc != 0) return job->kind == JOB_CREATE ? rc : -rc;
    pthread_join(thread, NULL);
    return job->result;
}

int cocoon_netns_create(const char *path) {
    struct job job = {.kind = JOB_CREATE, .path = path};
    return on_thread(&job);
}

int cocoon_netlink_in_netns(int netns_fd) {
    struct job job = {.kind = JOB_SOCKET, .netns_fd = netns_fd, .domain = AF_NETLINK, .type = SOCK_RAW,
                      .protocol = NETLINK_ROUTE};
    return on_thread(&job);
}

int cocoon_host_tap_create(const char *name) {
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) return errno;
    struct ifreq req;
    memset(&req, 0, sizeof(req));
    req.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    strncpy(req.ifr_name, name, IFNAMSIZ - 1);
    int rc = 0;
    if (ioctl(fd, TUNSETIFF, &req) != 0 || ioctl(fd, TUNSETPERSIST, 1) != 0) rc = errno;
    close(fd);
    return rc;
}

int cocoon_is_nsfs(const char *path) {
    struct statfs fs;
    return statfs(path, &fs) == 0 && fs.f_type == NSFS_MAGIC;
}

int cocoon_tap_in_netns(int netns_fd, const char *name) {
    struct job job = {.kind = JOB_TAP, .netns_fd = netns_fd, .path = name};
    return on_thread(&job);
}
