/*
 * The guest's /init: brings up just enough to start the Swift agent as PID 1.
 *
 * The agent does not live in the initramfs. It sits on a small read-only ext4 disk (the first
 * virtio-blk device, /dev/vda), which every pod VM shares through the host's page cache; the guest
 * reads only the pages it runs. That keeps the initramfs (which QEMU holds in memory for the VM's
 * whole life, and which the guest unpacks into RAM) at about a megabyte.
 *
 * Steps: mount /proc and /dev, load the block-device modules listed for the VM's bus
 * (/etc/cocoon/modules.boot.<bus>, bus from `cocoon.bus=` on the kernel command line), move the
 * initramfs into a tmpfs that becomes the root (as switch_root does: the initramfs itself cannot be
 * pivoted away from, so containers could only be chrooted, with every guest mount still in their
 * mount namespace), wait for /dev/vda, mount it read-only on /opt/cocoon, exec
 * /opt/cocoon/cocoon-agent. A static Swift binary reads /proc/self/exe before main() runs, which is
 * why /proc comes first.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <termios.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define AGENT_DISK "/dev/vda"
#define AGENT_DIR "/opt/cocoon"
#define AGENT_PATH AGENT_DIR "/cocoon-agent"

static void fail(const char *what) { fprintf(stderr, "cocoon-init: %s: %s\n", what, strerror(errno)); }

static char cmdline[4096];

static void read_cmdline(void) {
    int fd = open("/proc/cmdline", O_RDONLY);
    if (fd < 0) return;
    ssize_t n = read(fd, cmdline, sizeof cmdline - 1);
    close(fd);
    cmdline[n > 0 ? n : 0] = 0;
}

/* The value of `cocoon.bus=` on the kernel command line ("mmio" when absent). */
static void read_bus(char *bus, size_t len) {
    snprintf(bus, len, "mmio");
    char *p = strstr(cmdline, "cocoon.bus=");
    if (!p) return;
    p += strlen("cocoon.bus=");
    size_t i = 0;
    while (p[i] && p[i] != ' ' && p[i] != '\n' && i + 1 < len) { bus[i] = p[i]; i++; }
    bus[i] = 0;
}

/* Loads each module path listed (one per line, dependencies first) in `list`. */
static void load_modules(const char *list) {
    FILE *f = fopen(list, "r");
    if (!f) { fail(list); return; }
    char line[512];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (!line[0]) continue;
        int fd = open(line, O_RDONLY | O_CLOEXEC);
        if (fd < 0) { fail(line); continue; }
        if (syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST) fail(line);
        close(fd);
    }
    fclose(f);
}

/* Copies one entry of the initramfs (a path under ".") into /newroot. */
static int copy_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)ftw;
    if (strcmp(path, ".") == 0) return FTW_CONTINUE;
    char dest[4096];
    snprintf(dest, sizeof dest, "/newroot/%s", path + 2);
    if (type == FTW_D) {
        /* The boot modules are loaded already; the agent binds the agent disk's full tree here. */
        if (strcmp(path, "./lib/modules") == 0) {
            mkdir(dest, 0755);
            return FTW_SKIP_SUBTREE;
        }
        if (mkdir(dest, st->st_mode & 07777) != 0 && errno != EEXIST) fail(dest);
    } else if (type == FTW_SL) {
        char target[4096];
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n >= 0) { target[n] = 0; if (symlink(target, dest) != 0) fail(dest); }
    } else if (type == FTW_F && S_ISREG(st->st_mode)) {
        int in = open(path, O_RDONLY | O_CLOEXEC);
        int out = open(dest, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st->st_mode & 07777);
        char buf[65536];
        ssize_t n;
        while (in >= 0 && out >= 0 && (n = read(in, buf, sizeof buf)) > 0) {
            if (write(out, buf, (size_t)n) != n) { fail(dest); break; }
        }
        if (in < 0 || out < 0) fail(dest);
        if (in >= 0) close(in);
        if (out >= 0) close(out);
    }
    return FTW_CONTINUE;
}

/* Frees the initramfs's memory once it is copied (mount points and the new root are kept). */
static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)st; (void)type; (void)ftw;
    if (strcmp(path, ".") != 0) remove(path);
    return 0;
}

/* The initramfs's files into a tmpfs, /proc and /dev moved along, the tmpfs made the root. */
static int switch_root(void) {
    mkdir("/newroot", 0755);
    if (mount("tmpfs", "/newroot", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") != 0) { fail("mount /newroot"); return -1; }
    if (chdir("/") != 0) return -1;
    /* FTW_MOUNT: /proc, /dev and /newroot are other file systems and are not walked. */
    nftw(".", copy_entry, 32, FTW_PHYS | FTW_MOUNT | FTW_ACTIONRETVAL);
    nftw(".", remove_entry, 32, FTW_PHYS | FTW_MOUNT | FTW_DEPTH);
    mkdir("/newroot/proc", 0555);
    mkdir("/newroot/dev", 0755);
    if (mount("/proc", "/newroot/proc", NULL, MS_MOVE, NULL) != 0) { fail("move /proc"); return -1; }
    if (mount("/dev", "/newroot/dev", NULL, MS_MOVE, NULL) != 0) { fail("move /dev"); return -1; }
    if (chdir("/newroot") != 0 || mount(".", "/", NULL, MS_MOVE, NULL) != 0 || chroot(".") != 0 || chdir("/") != 0) {
        fail("switch to the new root");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    (void)argc;
    mkdir("/proc", 0555);
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) fail("mount /proc");
    mkdir("/dev", 0755);
    if (mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755") != 0) fail("mount /dev");

    read_cmdline();
    /* The host's KVM probe: reaching /init is the proof; say so and power off at once. */
    if (strstr(cmdline, "cocoon.probe=1")) {
        static const char marker[] = "COCOON-PROBE-OK\n";
        int con = open("/dev/console", O_WRONLY | O_NOCTTY);
        if (write(con >= 0 ? con : 2, marker, sizeof marker - 1) < 0) fail("write the probe marker");
        if (con >= 0) { tcdrain(con); close(con); }
        reboot(RB_POWER_OFF);
        return 0;
    }

    char bus[32], list[96];
    read_bus(bus, sizeof bus);
    snprintf(list, sizeof list, "/etc/cocoon/modules.boot.%s", bus);
    load_modules(list);
    if (switch_root() != 0) return 1;

    /* The disk node appears as the driver probes; allow two seconds (it is normally there at once). */
    struct timespec step = {0, 5 * 1000 * 1000};
    for (int i = 0; i < 400 && access(AGENT_DISK, F_OK) != 0; i++) nanosleep(&step, NULL);
    mkdir("/opt", 0755);
    mkdir(AGENT_DIR, 0755);
    if (mount(AGENT_DISK, AGENT_DIR, "ext4", MS_RDONLY | MS_NODEV | MS_NOSUID, "noload") != 0) {
        fail("mount the agent disk " AGENT_DISK);
        return 1;
    }
    argv[0] = AGENT_PATH;
    execv(AGENT_PATH, argv);
    fail("exec " AGENT_PATH);
    return 1;
}
