// SPDX-License-Identifier: MIT
/* PCI functions through sysfs: discovery, config space, driver binding, BAR resources. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/pci_regs.h>

#include "pci.h"
#include "sysfs.h"

#define PCI_DEVICES "/sys/bus/pci/devices"
#define PCI_DRIVERS "/sys/bus/pci/drivers"
#define EXT_CAP_START 0x100
#define EXT_CAP_MAX 64 /* more headers than fit in 4 KiB: a loop in the list */

static bool read_hex(const char *path, unsigned long *v)
{
	char buf[64];

	if (sysfs_read(path, buf, sizeof(buf)))
		return false;
	*v = strtoul(buf, NULL, 0);
	return true;
}

static int find_by_id(char *bdf, size_t len, uint16_t want_vendor, uint16_t want_device)
{
	DIR *d = opendir(PCI_DEVICES);
	struct dirent *de;
	char path[300];
	unsigned long vendor, device;
	int rc = ep_set_err(EP_ERR, "no PCI device %04x:%04x under " PCI_DEVICES, want_vendor,
			    want_device);

	if (!d)
		return ep_set_err(EP_ERR, "opendir " PCI_DEVICES ": %s", strerror(errno));
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), PCI_DEVICES "/%s/vendor", de->d_name);
		if (!read_hex(path, &vendor) || vendor != want_vendor)
			continue;
		snprintf(path, sizeof(path), PCI_DEVICES "/%s/device", de->d_name);
		if (!read_hex(path, &device) || device != want_device)
			continue;
		snprintf(bdf, len, "%s", de->d_name);
		rc = EP_OK;
		break;
	}
	closedir(d);
	return rc;
}

static int cfg_read(struct pci_dev *d, unsigned off, void *buf, size_t len)
{
	ssize_t n = pread(d->cfgfd, buf, len, off);

	if (n != (ssize_t)len)
		return ep_set_err(EP_ERR, "%s/config: read of %zu bytes at 0x%x returned %zd (%s)",
				  d->sysdir, len, off, n, n < 0 ? strerror(errno) : "short");
	return EP_OK;
}

static void find_ext_caps(struct pci_dev *d)
{
	unsigned off = EXT_CAP_START;

	for (int i = 0; i < EXT_CAP_MAX && off >= EXT_CAP_START; i++) {
		uint32_t hdr;

		if (cfg_read(d, off, &hdr, sizeof(hdr)) || hdr == 0 || hdr == 0xffffffff)
			return;
		if (PCI_EXT_CAP_ID(hdr) == PCI_EXT_CAP_ID_ATS && !d->ats_cap)
			d->ats_cap = (uint16_t)off;
		if (PCI_EXT_CAP_ID(hdr) == PCI_EXT_CAP_ID_PASID && !d->pasid_cap)
			d->pasid_cap = (uint16_t)off;
		off = PCI_EXT_CAP_NEXT(hdr);
	}
}

static void init(struct pci_dev *d)
{
	memset(d, 0, sizeof(*d));
	d->group = -1;
	d->cfgfd = d->owner_fd = -1;
}

void pci_read_group(struct pci_dev *d)
{
	char path[300], link[300];
	ssize_t n;

	d->group = -1;
	snprintf(path, sizeof(path), "%s/iommu_group", d->sysdir);
	n = readlink(path, link, sizeof(link) - 1);
	if (n > 0) {
		link[n] = '\0';
		d->group = atoi(basename(link));
	}
}

int pci_find(struct pci_dev *d, const char *bdf, uint16_t vendor, uint16_t device)
{
	char path[300];
	int rc;

	init(d);
	if (bdf) {
		snprintf(d->bdf, sizeof(d->bdf), "%s", bdf);
	} else {
		rc = find_by_id(d->bdf, sizeof(d->bdf), vendor, device);
		if (rc)
			return rc;
	}
	snprintf(d->sysdir, sizeof(d->sysdir), PCI_DEVICES "/%s", d->bdf);
	if (!path_exists(d->sysdir))
		return ep_set_err(EP_ERR, "%s does not exist", d->sysdir);
	pci_read_group(d);
	snprintf(path, sizeof(path), "%s/config", d->sysdir);
	d->cfgfd = open(path, O_RDWR | O_CLOEXEC);
	if (d->cfgfd < 0)
		return ep_set_err(EP_ERR, "open %s: %s", path, strerror(errno));
	d->owner_fd = d->cfgfd;
	find_ext_caps(d);
	return EP_OK;
}

void pci_close(struct pci_dev *d)
{
	if (d->cfgfd >= 0)
		close(d->cfgfd);
	init(d);
}

/* ------------------------------------------------------------------------------------- */
/* Config space */

int pci_cfg_read16(struct pci_dev *d, unsigned off, uint16_t *val)
{
	return cfg_read(d, off, val, sizeof(*val));
}

void pci_cfg_owner(struct pci_dev *d, int fd, off_t off)
{
	d->owner_fd = fd;
	d->owner_off = off;
}

static bool owned(const struct pci_dev *d)
{
	return d->owner_fd != d->cfgfd;
}

int pci_cfg_write16(struct pci_dev *d, unsigned off, uint16_t val)
{
	if (pwrite(d->owner_fd, &val, sizeof(val), d->owner_off + off) != sizeof(val))
		return ep_set_err(EP_ERR, "config write 0x%04x at 0x%x (%s): %s", val, off,
				  owned(d) ? "owner" : "sysfs", strerror(errno));
	return EP_OK;
}

int pci_ats_enabled(struct pci_dev *d, bool *on)
{
	uint16_t ctrl;

	if (!d->ats_cap)
		return ep_set_err(EP_ERR, "%s has no ATS extended capability", d->bdf);
	if (cfg_read(d, d->ats_cap + PCI_ATS_CTRL, &ctrl, sizeof(ctrl)))
		return EP_ERR;
	*on = ctrl & PCI_ATS_CTRL_ENABLE;
	return EP_OK;
}

int pci_pasid_enabled(struct pci_dev *d, bool *on)
{
	uint16_t ctrl;

	if (!d->pasid_cap)
		return ep_set_err(EP_ERR, "%s has no PASID extended capability", d->bdf);
	if (cfg_read(d, d->pasid_cap + PCI_PASID_CTRL, &ctrl, sizeof(ctrl)))
		return EP_ERR;
	*on = ctrl & PCI_PASID_CTRL_ENABLE;
	return EP_OK;
}

int pci_bus_master(struct pci_dev *d, bool on)
{
	uint16_t cmd;

	if (pread(d->owner_fd, &cmd, sizeof(cmd), d->owner_off + PCI_COMMAND) != sizeof(cmd))
		return ep_set_err(EP_ERR, "config read of Command: %s", strerror(errno));
	cmd = on ? (cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER) : (cmd & ~PCI_COMMAND_MASTER);
	return pci_cfg_write16(d, PCI_COMMAND, cmd);
}

int pci_memory_enable(struct pci_dev *d)
{
	uint16_t cmd;
	int rc = pci_cfg_read16(d, PCI_COMMAND, &cmd);

	if (rc)
		return rc;
	return pci_cfg_write16(d, PCI_COMMAND, cmd | PCI_COMMAND_MEMORY);
}

/* ------------------------------------------------------------------------------------- */
/* Driver binding */

const char *pci_driver(struct pci_dev *d, char *buf, size_t len)
{
	char path[300], link[300];
	ssize_t n;

	snprintf(path, sizeof(path), "%s/driver", d->sysdir);
	n = readlink(path, link, sizeof(link) - 1);
	if (n <= 0) {
		buf[0] = '\0';
		return buf;
	}
	link[n] = '\0';
	snprintf(buf, len, "%s", basename(link));
	return buf;
}

int pci_unbind_driver(struct pci_dev *d)
{
	char drv[64], path[300];

	if (!*pci_driver(d, drv, sizeof(drv)))
		return EP_OK;
	snprintf(path, sizeof(path), "%s/driver/unbind", d->sysdir);
	if (sysfs_write(path, d->bdf))
		return EP_ERR;
	if (*pci_driver(d, drv, sizeof(drv)))
		return ep_set_err(EP_ERR, "%s still bound to %s after unbind", d->bdf, drv);
	return EP_OK;
}

int pci_bind_driver(struct pci_dev *d, const char *want)
{
	char drv[64], path[300];

	snprintf(path, sizeof(path), PCI_DRIVERS "/%s", want);
	if (!path_exists(path))
		return ep_set_err(EP_UNSUP, "%s (no %s)", want, path);
	if (!strcmp(pci_driver(d, drv, sizeof(drv)), want))
		return EP_OK;
	if (pci_unbind_driver(d))
		return EP_ERR;
	snprintf(path, sizeof(path), "%s/driver_override", d->sysdir);
	if (sysfs_write(path, want))
		return EP_ERR;
	if (sysfs_write("/sys/bus/pci/drivers_probe", d->bdf))
		return EP_ERR;
	if (strcmp(pci_driver(d, drv, sizeof(drv)), want))
		return ep_set_err(EP_ERR, "%s bound to '%s' after drivers_probe, wanted %s",
				  d->bdf, drv, want);
	return EP_OK;
}

/* ------------------------------------------------------------------------------------- */
/* BARs */

int pci_map_resource(struct pci_dev *d, unsigned bar, volatile uint8_t **map, size_t *size)
{
	char path[300];
	struct stat st;
	void *p;
	int fd;

	snprintf(path, sizeof(path), "%s/resource%u", d->sysdir, bar);
	fd = open(path, O_RDWR | O_SYNC | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st))
		return ep_set_err(EP_ERR, "open %s: %s", path, strerror(errno));
	p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return ep_set_err(EP_ERR, "mmap %s (%lld bytes): %s", path, (long long)st.st_size,
				  strerror(errno));
	*map = p;
	*size = (size_t)st.st_size;
	return EP_OK;
}
