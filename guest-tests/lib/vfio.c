// SPDX-License-Identifier: MIT
/*
 * The endpoint as a userspace driver sees it: found in sysfs, bound to vfio-pci, opened as
 * a VFIO cdev bound to an iommufd, with BAR0 mapped. Also the iommufd objects (IOAS, HWPT)
 * and the attach/replace/detach calls whose hitless behaviour the tests observe.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <linux/iommufd.h>
#include <linux/pci_regs.h>
#include <linux/vfio.h>

#include "cosim.h"

#define PCI_DEVICES "/sys/bus/pci/devices"
#define VFIO_PCI_DRV "/sys/bus/pci/drivers/vfio-pci"
#define EXT_CAP_START 0x100
#define EXT_CAP_MAX 64 /* more headers than fit in 4 KiB: a loop in the list */

static int errno_rc(int e)
{
	/* The ioctl or the operation does not exist in this kernel. */
	return (e == ENOTTY || e == EOPNOTSUPP) ? EP_UNSUP : EP_ERR;
}

static bool read_hex(const char *path, unsigned long *v)
{
	char buf[64];

	if (sysfs_read(path, buf, sizeof(buf)))
		return false;
	*v = strtoul(buf, NULL, 0);
	return true;
}

static int find_by_id(char *bdf, size_t len)
{
	DIR *d = opendir(PCI_DEVICES);
	struct dirent *de;
	char path[300];
	unsigned long vendor, device;
	int rc = ep_set_err(EP_ERR, "no PCI device %04x:%04x under " PCI_DEVICES,
			    COSIM_EP_VENDOR_ID, COSIM_EP_DEVICE_ID);

	if (!d)
		return ep_set_err(EP_ERR, "opendir " PCI_DEVICES ": %s", strerror(errno));
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), PCI_DEVICES "/%s/vendor", de->d_name);
		if (!read_hex(path, &vendor) || vendor != COSIM_EP_VENDOR_ID)
			continue;
		snprintf(path, sizeof(path), PCI_DEVICES "/%s/device", de->d_name);
		if (!read_hex(path, &device) || device != COSIM_EP_DEVICE_ID)
			continue;
		snprintf(bdf, len, "%s", de->d_name);
		rc = EP_OK;
		break;
	}
	closedir(d);
	return rc;
}

static int cfg_read(struct ep *ep, unsigned off, void *buf, size_t len)
{
	ssize_t n = pread(ep->cfgfd, buf, len, off);

	if (n != (ssize_t)len)
		return ep_set_err(EP_ERR, "%s/config: read of %zu bytes at 0x%x returned %zd (%s)",
				  ep->sysdir, len, off, n, n < 0 ? strerror(errno) : "short");
	return EP_OK;
}

static void find_ext_caps(struct ep *ep)
{
	unsigned off = EXT_CAP_START;

	for (int i = 0; i < EXT_CAP_MAX && off >= EXT_CAP_START; i++) {
		uint32_t hdr;

		if (cfg_read(ep, off, &hdr, sizeof(hdr)) || hdr == 0 || hdr == 0xffffffff)
			return;
		if (PCI_EXT_CAP_ID(hdr) == PCI_EXT_CAP_ID_ATS && !ep->ats_cap)
			ep->ats_cap = (uint16_t)off;
		if (PCI_EXT_CAP_ID(hdr) == PCI_EXT_CAP_ID_PASID && !ep->pasid_cap)
			ep->pasid_cap = (uint16_t)off;
		off = PCI_EXT_CAP_NEXT(hdr);
	}
}

static void ep_init(struct ep *ep)
{
	memset(ep, 0, sizeof(*ep));
	ep->group = -1;
	ep->cfgfd = ep->iommufd = ep->devfd = -1;
}

/* The group appears when the IOMMU driver probes the device, which with DT is at the first
 * driver bind: read it again after binding. */
static void read_group(struct ep *ep)
{
	char path[300], link[300];
	ssize_t n;

	ep->group = -1;
	snprintf(path, sizeof(path), "%s/iommu_group", ep->sysdir);
	n = readlink(path, link, sizeof(link) - 1);
	if (n > 0) {
		link[n] = '\0';
		ep->group = atoi(basename(link));
	}
}

int ep_find(struct ep *ep, const char *bdf)
{
	char path[300];
	int rc;

	ep_init(ep);
	if (bdf) {
		snprintf(ep->bdf, sizeof(ep->bdf), "%s", bdf);
	} else {
		rc = find_by_id(ep->bdf, sizeof(ep->bdf));
		if (rc)
			return rc;
	}
	snprintf(ep->sysdir, sizeof(ep->sysdir), PCI_DEVICES "/%s", ep->bdf);
	if (!path_exists(ep->sysdir))
		return ep_set_err(EP_ERR, "%s does not exist", ep->sysdir);
	read_group(ep);
	snprintf(path, sizeof(path), "%s/config", ep->sysdir);
	ep->cfgfd = open(path, O_RDWR | O_CLOEXEC);
	if (ep->cfgfd < 0)
		return ep_set_err(EP_ERR, "open %s: %s", path, strerror(errno));
	find_ext_caps(ep);
	return EP_OK;
}

const char *ep_driver(struct ep *ep, char *buf, size_t len)
{
	char path[300], link[300];
	ssize_t n;

	snprintf(path, sizeof(path), "%s/driver", ep->sysdir);
	n = readlink(path, link, sizeof(link) - 1);
	if (n <= 0) {
		buf[0] = '\0';
		return buf;
	}
	link[n] = '\0';
	snprintf(buf, len, "%s", basename(link));
	return buf;
}

int ep_unbind_driver(struct ep *ep)
{
	char drv[64], path[300];

	if (!*ep_driver(ep, drv, sizeof(drv)))
		return EP_OK;
	snprintf(path, sizeof(path), "%s/driver/unbind", ep->sysdir);
	if (sysfs_write(path, ep->bdf))
		return EP_ERR;
	if (*ep_driver(ep, drv, sizeof(drv)))
		return ep_set_err(EP_ERR, "%s still bound to %s after unbind", ep->bdf, drv);
	return EP_OK;
}

static int bind_vfio_pci(struct ep *ep)
{
	char drv[64], path[300];

	if (!path_exists(VFIO_PCI_DRV))
		return ep_set_err(EP_UNSUP, "vfio-pci (no " VFIO_PCI_DRV ")");
	if (!strcmp(ep_driver(ep, drv, sizeof(drv)), "vfio-pci"))
		return EP_OK;
	if (ep_unbind_driver(ep))
		return EP_ERR;
	snprintf(path, sizeof(path), "%s/driver_override", ep->sysdir);
	if (sysfs_write(path, "vfio-pci"))
		return EP_ERR;
	if (sysfs_write("/sys/bus/pci/drivers_probe", ep->bdf))
		return EP_ERR;
	if (strcmp(ep_driver(ep, drv, sizeof(drv)), "vfio-pci"))
		return ep_set_err(EP_ERR, "%s bound to '%s' after drivers_probe, wanted vfio-pci",
				  ep->bdf, drv);
	return EP_OK;
}

/* Open a character device, creating its node from sysfs "maj:min" when devtmpfs lacks it. */
static int open_chardev(const char *node, const char *devfile)
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

static int region_info(struct ep *ep, unsigned index, struct vfio_region_info *ri)
{
	memset(ri, 0, sizeof(*ri));
	ri->argsz = sizeof(*ri);
	ri->index = index;
	if (ioctl(ep->devfd, VFIO_DEVICE_GET_REGION_INFO, ri))
		return ep_set_err(EP_ERR, "VFIO_DEVICE_GET_REGION_INFO(%u): %s (errno %d)", index,
				  strerror(errno), errno);
	return EP_OK;
}

static int check_id(struct ep *ep)
{
	uint32_t id = ep_rd32(ep, COSIM_EP_ID), ver = ep_rd32(ep, COSIM_EP_VERSION);

	if (id != COSIM_EP_ID_VALUE)
		return ep_set_err(EP_ERR, "BAR0 ID reads 0x%08x, expected 0x%08x", id,
				  COSIM_EP_ID_VALUE);
	if (ver != COSIM_EP_VERSION_VALUE)
		return ep_set_err(EP_ERR, "BAR0 VERSION reads %u, these tests know %u", ver,
				  COSIM_EP_VERSION_VALUE);
	return EP_OK;
}

int ep_bind_vfio(struct ep *ep, const char *bdf)
{
	int rc = ep_find(ep, bdf);

	if (rc)
		return rc;
	rc = bind_vfio_pci(ep);
	if (rc)
		return rc;
	read_group(ep);
	return EP_OK;
}

/* A copy of the device the running case opened through VFIO, for ep_case_cleanup (the
 * case's own struct ep is on its stack and gone by then); its attach state is kept in step
 * by the attach/detach calls. */
static struct ep case_dev;
static bool case_open;

static struct ep *case_of(struct ep *ep)
{
	return case_open && ep != &case_dev && ep->devfd == case_dev.devfd ? &case_dev : NULL;
}

int ep_open_vfio(struct ep *ep, const char *bdf)
{
	char path[300], node[300], devfile[300], name[64] = "";
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind) };
	struct vfio_region_info ri;
	DIR *d;
	struct dirent *de;
	void *bar;
	int rc;

	rc = ep_bind_vfio(ep, bdf);
	if (rc)
		return rc;
	snprintf(path, sizeof(path), "%s/vfio-dev", ep->sysdir);
	d = opendir(path);
	if (!d)
		return ep_set_err(EP_UNSUP, "VFIO device cdev (no %s: CONFIG_VFIO_DEVICE_CDEV)",
				  path);
	while ((de = readdir(d)))
		if (!strncmp(de->d_name, "vfio", 4))
			snprintf(name, sizeof(name), "%s", de->d_name);
	closedir(d);
	if (!*name)
		return ep_set_err(EP_ERR, "%s holds no vfioN entry", path);
	snprintf(node, sizeof(node), "/dev/vfio/devices/%s", name);
	snprintf(devfile, sizeof(devfile), "%s/%s/dev", path, name);
	ep->devfd = open_chardev(node, devfile);
	if (ep->devfd < 0) {
		/* vfio-dev/vfioN exists without CONFIG_VFIO_DEVICE_CDEV, but has no dev number. */
		if (errno == ENOENT)
			return ep_set_err(EP_UNSUP, "VFIO device cdev (no %s: "
					  "CONFIG_VFIO_DEVICE_CDEV, which needs CONFIG_IOMMUFD)",
					  devfile);
		return ep_set_err(EP_ERR, "open %s: %s (errno %d)", node, strerror(errno), errno);
	}

	ep->iommufd = open_chardev("/dev/iommu", "/sys/class/misc/iommu/dev");
	if (ep->iommufd < 0) {
		if (errno == ENOENT)
			return ep_set_err(EP_UNSUP, "iommufd (no /dev/iommu nor "
					  "/sys/class/misc/iommu: CONFIG_IOMMUFD)");
		return ep_set_err(EP_ERR, "open /dev/iommu: %s (errno %d)", strerror(errno),
				  errno);
	}
	bind.iommufd = ep->iommufd;
	if (ioctl(ep->devfd, VFIO_DEVICE_BIND_IOMMUFD, &bind))
		return ep_set_err(errno_rc(errno), "VFIO_DEVICE_BIND_IOMMUFD on %s: %s (errno %d)",
				  node, strerror(errno), errno);
	ep->dev_id = bind.out_devid;

	rc = region_info(ep, VFIO_PCI_CONFIG_REGION_INDEX, &ri);
	if (rc)
		return rc;
	ep->vfio_cfg_off = ri.offset;
	ep->vfio_cfg = true;

	rc = region_info(ep, VFIO_PCI_BAR0_REGION_INDEX, &ri);
	if (rc)
		return rc;
	if (!(ri.flags & VFIO_REGION_INFO_FLAG_MMAP) || ri.size < COSIM_EP_BAR_REGS_SIZE)
		return ep_set_err(EP_ERR, "BAR0 region: flags 0x%x size 0x%llx, need mmap and "
				  "0x%x bytes", ri.flags, (unsigned long long)ri.size,
				  COSIM_EP_BAR_REGS_SIZE);
	bar = mmap(NULL, ri.size, PROT_READ | PROT_WRITE, MAP_SHARED, ep->devfd, (off_t)ri.offset);
	if (bar == MAP_FAILED)
		return ep_set_err(EP_ERR, "mmap BAR0 (0x%llx bytes at 0x%llx): %s",
				  (unsigned long long)ri.size, (unsigned long long)ri.offset,
				  strerror(errno));
	ep->bar = bar;
	ep->bar_size = ri.size;
	rc = check_id(ep);
	if (rc)
		return rc;
	ep_reset(ep);
	case_dev = *ep;
	case_open = true;
	return EP_OK;
}

int ep_open_sysfs(struct ep *ep, const char *bdf)
{
	char path[300];
	struct stat st;
	uint16_t cmd;
	void *bar;
	int fd, rc;

	rc = ep_find(ep, bdf);
	if (rc)
		return rc;
	rc = ep_unbind_driver(ep);
	if (rc)
		return rc;
	snprintf(path, sizeof(path), "%s/resource0", ep->sysdir);
	fd = open(path, O_RDWR | O_SYNC | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st))
		return ep_set_err(EP_ERR, "open %s: %s", path, strerror(errno));
	bar = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (bar == MAP_FAILED)
		return ep_set_err(EP_ERR, "mmap %s (%lld bytes): %s", path, (long long)st.st_size,
				  strerror(errno));
	ep->bar = bar;
	ep->bar_size = (size_t)st.st_size;
	/* No driver enabled the device: turn on memory decoding ourselves. */
	rc = ep_cfg_read16(ep, PCI_COMMAND, &cmd);
	if (rc)
		return rc;
	rc = ep_cfg_write16(ep, PCI_COMMAND, cmd | PCI_COMMAND_MEMORY);
	if (rc)
		return rc;
	rc = check_id(ep);
	if (rc)
		return rc;
	ep_reset(ep);
	return EP_OK;
}

void ep_close(struct ep *ep)
{
	if (case_of(ep))
		case_open = false;
	if (ep->bar)
		munmap((void *)ep->bar, ep->bar_size);
	if (ep->devfd >= 0)
		close(ep->devfd);
	if (ep->iommufd >= 0)
		close(ep->iommufd);
	if (ep->cfgfd >= 0)
		close(ep->cfgfd);
	ep_init(ep);
}

/* ------------------------------------------------------------------------------------- */
/* Config space */

int ep_cfg_read16(struct ep *ep, unsigned off, uint16_t *val)
{
	return cfg_read(ep, off, val, sizeof(*val));
}

int ep_cfg_write16(struct ep *ep, unsigned off, uint16_t val)
{
	/* Through VFIO when we own the device, so vfio-pci's virtual config stays in step. */
	int fd = ep->vfio_cfg ? ep->devfd : ep->cfgfd;
	off_t pos = (off_t)((ep->vfio_cfg ? ep->vfio_cfg_off : 0) + off);

	if (pwrite(fd, &val, sizeof(val), pos) != sizeof(val))
		return ep_set_err(EP_ERR, "config write 0x%04x at 0x%x (%s): %s", val, off,
				  ep->vfio_cfg ? "vfio" : "sysfs", strerror(errno));
	return EP_OK;
}

int ep_ats_enabled(struct ep *ep, bool *on)
{
	uint16_t ctrl;

	if (!ep->ats_cap)
		return ep_set_err(EP_ERR, "%s has no ATS extended capability", ep->bdf);
	if (cfg_read(ep, ep->ats_cap + PCI_ATS_CTRL, &ctrl, sizeof(ctrl)))
		return EP_ERR;
	*on = ctrl & PCI_ATS_CTRL_ENABLE;
	return EP_OK;
}

int ep_pasid_enabled(struct ep *ep, bool *on)
{
	uint16_t ctrl;

	if (!ep->pasid_cap)
		return ep_set_err(EP_ERR, "%s has no PASID extended capability", ep->bdf);
	if (cfg_read(ep, ep->pasid_cap + PCI_PASID_CTRL, &ctrl, sizeof(ctrl)))
		return EP_ERR;
	*on = ctrl & PCI_PASID_CTRL_ENABLE;
	return EP_OK;
}

int ep_bus_master(struct ep *ep, bool on)
{
	uint16_t cmd;
	int fd = ep->vfio_cfg ? ep->devfd : ep->cfgfd;
	off_t pos = (off_t)((ep->vfio_cfg ? ep->vfio_cfg_off : 0) + PCI_COMMAND);

	if (pread(fd, &cmd, sizeof(cmd), pos) != sizeof(cmd))
		return ep_set_err(EP_ERR, "config read of Command: %s", strerror(errno));
	cmd = on ? (cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER) : (cmd & ~PCI_COMMAND_MASTER);
	return ep_cfg_write16(ep, PCI_COMMAND, cmd);
}

/* ------------------------------------------------------------------------------------- */
/* iommufd */

int ep_ioas_alloc(struct ep *ep, uint32_t *ioas)
{
	struct iommu_ioas_alloc a = { .size = sizeof(a) };

	if (ioctl(ep->iommufd, IOMMU_IOAS_ALLOC, &a))
		return ep_set_err(errno_rc(errno), "IOMMU_IOAS_ALLOC: %s (errno %d)",
				  strerror(errno), errno);
	*ioas = a.out_ioas_id;
	return EP_OK;
}

int ep_ioas_map(struct ep *ep, uint32_t ioas, void *va, uint64_t len, uint64_t iova)
{
	struct iommu_ioas_map m = {
		.size = sizeof(m),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
			 IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = ioas,
		.user_va = (uintptr_t)va,
		.length = len,
		.iova = iova,
	};

	if (ioctl(ep->iommufd, IOMMU_IOAS_MAP, &m))
		return ep_set_err(EP_ERR, "IOMMU_IOAS_MAP ioas %u iova 0x%llx len 0x%llx: %s "
				  "(errno %d)", ioas, (unsigned long long)iova,
				  (unsigned long long)len, strerror(errno), errno);
	return EP_OK;
}

int ep_ioas_unmap(struct ep *ep, uint32_t ioas, uint64_t iova, uint64_t len)
{
	struct iommu_ioas_unmap u = { .size = sizeof(u), .ioas_id = ioas, .iova = iova,
				      .length = len };

	if (ioctl(ep->iommufd, IOMMU_IOAS_UNMAP, &u))
		return ep_set_err(EP_ERR, "IOMMU_IOAS_UNMAP ioas %u iova 0x%llx len 0x%llx: %s "
				  "(errno %d)", ioas, (unsigned long long)iova,
				  (unsigned long long)len, strerror(errno), errno);
	if (u.length != len)
		return ep_set_err(EP_ERR, "IOMMU_IOAS_UNMAP unmapped 0x%llx bytes, asked 0x%llx",
				  (unsigned long long)u.length, (unsigned long long)len);
	return EP_OK;
}

int ep_hwpt_alloc(struct ep *ep, uint32_t pt_id, uint32_t flags, uint32_t *hwpt)
{
	struct iommu_hwpt_alloc a = {
		.size = sizeof(a),
		.flags = flags,
		.dev_id = ep->dev_id,
		.pt_id = pt_id,
		.data_type = IOMMU_HWPT_DATA_NONE,
	};

	if (ioctl(ep->iommufd, IOMMU_HWPT_ALLOC, &a))
		return ep_set_err(errno_rc(errno), "IOMMU_HWPT_ALLOC (paging, flags 0x%x) on "
				  "ioas %u: %s (errno %d)", flags, pt_id, strerror(errno), errno);
	*hwpt = a.out_hwpt_id;
	return EP_OK;
}

int ep_destroy(struct ep *ep, uint32_t id)
{
	struct iommu_destroy d = { .size = sizeof(d), .id = id };

	if (ioctl(ep->iommufd, IOMMU_DESTROY, &d))
		return ep_set_err(EP_ERR, "IOMMU_DESTROY %u: %s (errno %d)", id, strerror(errno),
				  errno);
	return EP_OK;
}

int ep_attach(struct ep *ep, uint32_t pt_id)
{
	/* argsz covers only the fields every kernel knows (up to pt_id). */
	struct vfio_device_attach_iommufd_pt a = {
		.argsz = offsetof(struct vfio_device_attach_iommufd_pt, pt_id) + sizeof(a.pt_id),
		.pt_id = pt_id,
	};
	if (ioctl(ep->devfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &a))
		return ep_set_err(errno_rc(errno), "VFIO_DEVICE_ATTACH_IOMMUFD_PT pt %u: %s "
				  "(errno %d)", pt_id, strerror(errno), errno);
	ep->rid_attached = true;
	if (case_of(ep))
		case_dev.rid_attached = true;
	return EP_OK;
}

int ep_detach(struct ep *ep)
{
#ifdef VFIO_DEVICE_DETACH_IOMMUFD_PT
	struct vfio_device_detach_iommufd_pt d = {
		.argsz = offsetof(struct vfio_device_detach_iommufd_pt, flags) + sizeof(d.flags),
	};

	if (ioctl(ep->devfd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &d))
		return ep_set_err(errno_rc(errno), "VFIO_DEVICE_DETACH_IOMMUFD_PT: %s (errno %d)",
				  strerror(errno), errno);
	ep->rid_attached = false;
	if (case_of(ep))
		case_dev.rid_attached = false;
	return EP_OK;
#else
	(void)ep;
	return ep_set_err(EP_UNSUP, "iommufd detach to blocked (no "
			  "VFIO_DEVICE_DETACH_IOMMUFD_PT in this uapi)");
#endif
}

int ep_attach_marked(struct ep *ep, uint32_t pt_id, uint64_t i, const char *label)
{
	int rc;

	ep_marker(ep, COSIM_EP_MARKER_TAG_ATTACH_BEGIN, i, label);
	rc = ep_attach(ep, pt_id);
	ep_marker(ep, COSIM_EP_MARKER_TAG_ATTACH_END, i, label);
	return rc;
}

int ep_detach_marked(struct ep *ep, uint64_t i, const char *label)
{
	int rc;

	ep_marker(ep, COSIM_EP_MARKER_TAG_ATTACH_BEGIN, i, label);
	rc = ep_detach(ep);
	ep_marker(ep, COSIM_EP_MARKER_TAG_ATTACH_END, i, label);
	return rc;
}

void ep_case_cleanup(void)
{
	struct ep *ep = &case_dev;
	int rc;

	if (!case_open || !ep->bar)
		return;
	ep_tg_stop(ep);
	ep_bus_master(ep, false);
	if (ep->pasid_attached) {
		uint32_t pasid = ep->pasid_attached;

		ep_marker(ep, COSIM_EP_MARKER_TAG_PASID_ATTACH_BEGIN, pasid, "cleanup: detach");
		rc = ep_detach_pasid(ep, pasid);
		ep_marker(ep, COSIM_EP_MARKER_TAG_PASID_ATTACH_END, pasid, "cleanup: detach");
		if (rc)
			vdiag("cleanup: PASID %u detach: %s", pasid, ep_err);
	}
	/* Without the detach uapi (EP_UNSUP) close() does the same, unmarked. */
	if (ep->rid_attached && (rc = ep_detach_marked(ep, 0, "cleanup: detach")))
		vdiag("cleanup: RID detach: %s", ep_err);
	case_open = false;
}

bool ep_pasid_uapi(void)
{
#ifdef VFIO_DEVICE_ATTACH_PASID
	return true;
#else
	return false;
#endif
}

uint32_t ep_hwpt_pasid_flag(void)
{
#ifdef VFIO_DEVICE_ATTACH_PASID
	/* The uapi that has PASID attach requires PASID-compatible domains on the RID too. */
	return IOMMU_HWPT_ALLOC_PASID;
#else
	return 0;
#endif
}

int ep_attach_pasid(struct ep *ep, uint32_t pasid, uint32_t pt_id)
{
#ifdef VFIO_DEVICE_ATTACH_PASID
	struct vfio_device_attach_iommufd_pt a = {
		.argsz = sizeof(a), .flags = VFIO_DEVICE_ATTACH_PASID, .pt_id = pt_id,
		.pasid = pasid,
	};

	if (ioctl(ep->devfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &a))
		return ep_set_err(errno_rc(errno), "VFIO_DEVICE_ATTACH_IOMMUFD_PT pasid %u pt %u: "
				  "%s (errno %d)", pasid, pt_id, strerror(errno), errno);
	ep->pasid_attached = pasid;
	if (case_of(ep))
		case_dev.pasid_attached = pasid;
	return EP_OK;
#else
	(void)ep; (void)pasid; (void)pt_id;
	return ep_set_err(EP_UNSUP, "PASID attach (no VFIO_DEVICE_ATTACH_PASID in this uapi)");
#endif
}

int ep_detach_pasid(struct ep *ep, uint32_t pasid)
{
#ifdef VFIO_DEVICE_DETACH_PASID
	struct vfio_device_detach_iommufd_pt d = {
		.argsz = sizeof(d), .flags = VFIO_DEVICE_DETACH_PASID, .pasid = pasid,
	};

	if (ioctl(ep->devfd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &d))
		return ep_set_err(errno_rc(errno), "VFIO_DEVICE_DETACH_IOMMUFD_PT pasid %u: %s "
				  "(errno %d)", pasid, strerror(errno), errno);
	if (ep->pasid_attached == pasid)
		ep->pasid_attached = 0;
	if (case_of(ep) && case_dev.pasid_attached == pasid)
		case_dev.pasid_attached = 0;
	return EP_OK;
#else
	(void)ep; (void)pasid;
	return ep_set_err(EP_UNSUP, "PASID detach (no VFIO_DEVICE_DETACH_PASID in this uapi)");
#endif
}

int ep_domain(struct ep *ep, struct domain *d, uint64_t iova, uint64_t len, uint32_t hwpt_flags)
{
	int rc;

	memset(d, 0, sizeof(*d));
	d->iova = iova;
	d->len = len;
	d->buf = dma_buf(len);
	if (!d->buf)
		return EP_ERR;
	rc = ep_ioas_alloc(ep, &d->ioas);
	if (!rc)
		rc = ep_ioas_map(ep, d->ioas, d->buf, len, iova);
	if (!rc)
		rc = ep_hwpt_alloc(ep, d->ioas, hwpt_flags, &d->hwpt);
	return rc;
}

void *dma_buf(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

	if (p == MAP_FAILED) {
		ep_set_err(EP_ERR, "mmap %zu bytes: %s", len, strerror(errno));
		return NULL;
	}
	return p;
}

void dma_buf_free(void *p, size_t len)
{
	if (p)
		munmap(p, len);
}
