/* SPDX-License-Identifier: MIT */
/* sysfs files and device nodes (sysfs.c): one value per file, errors through ep_err. */
#ifndef COSIM_SYSFS_H
#define COSIM_SYSFS_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"

int sysfs_read(const char *path, char *buf, size_t len);  /* trailing newline stripped */
int sysfs_write(const char *path, const char *val);
bool path_exists(const char *path);
/* Open a character device node read-write, creating it from the sysfs "maj:min" file devfile
 * when devtmpfs lacks it. An fd, or -1 with errno (ENOENT: neither exists). */
int open_chardev(const char *node, const char *devfile);

#endif /* COSIM_SYSFS_H */
