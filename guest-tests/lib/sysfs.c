// SPDX-License-Identifier: MIT
/* Small sysfs file helpers: one value per file, errors reported through ep_err; device nodes. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "sysfs.h"

bool path_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

int sysfs_read(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return ep_set_err(EP_ERR, "open %s: %s (errno %d)", path, strerror(errno), errno);
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return ep_set_err(EP_ERR, "read %s: %s (errno %d)", path, strerror(errno), errno);
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	return EP_OK;
}

int sysfs_write(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;
	size_t len = strlen(val);

	if (fd < 0)
		return ep_set_err(EP_ERR, "open %s: %s (errno %d)", path, strerror(errno), errno);
	n = write(fd, val, len);
	if (n < 0) {
		int e = errno;

		close(fd);
		return ep_set_err(EP_ERR, "write '%s' to %s: %s (errno %d)", val, path,
				  strerror(e), e);
	}
	close(fd);
	if ((size_t)n != len)
		return ep_set_err(EP_ERR, "write '%s' to %s: short write %zd", val, path, n);
	return EP_OK;
}

int open_chardev(const char *node, const char *devfile)
{
	char buf[32], dir[300];
	unsigned maj, min;
	int fd = open(node, O_RDWR | O_CLOEXEC);

	if (fd >= 0 || errno != ENOENT)
		return fd;
	if (sysfs_read(devfile, buf, sizeof(buf)) || sscanf(buf, "%u:%u", &maj, &min) != 2) {
		errno = ENOENT;
		return -1;
	}
	snprintf(dir, sizeof(dir), "%s", node);
	for (char *p = dir + 1; *p; p++) {
		if (*p == '/') {
			*p = '\0';
			mkdir(dir, 0755);
			*p = '/';
		}
	}
	if (mknod(node, S_IFCHR | 0600, makedev(maj, min)) && errno != EEXIST)
		return -1;
	return open(node, O_RDWR | O_CLOEXEC);
}
