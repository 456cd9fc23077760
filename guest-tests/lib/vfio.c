// SPDX-License-Identifier: MIT
/* A VFIO device cdev bound to an iommufd: open, bind, regions, RID and PASID attach. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/iommufd.h>
#include <linux/vfio.h>

#include "sysfs.h"
#include "vfio.h"

void vfio_init(struct vfio_dev *v)
{
	memset(v, 0, sizeof(*v));
	v->fd = -1;
}

int vfio_open_cdev(struct vfio_dev *v, const struct pci_dev *d)
{
	char path[300], devfile[300], name[64] = "";
	DIR *dir;
	struct dirent *de;

	vfio_init(v);
	snprintf(path, sizeof(path), "%s/vfio-dev", d->sysdir);
	dir = opendir(path);
	if (!dir)
		return ep_set_err(EP_UNSUP, "VFIO device cdev (no %s: CONFIG_VFIO_DEVICE_CDEV)",
				  path);
	while ((de = readdir(dir)))
		if (!strncmp(de->d_name, "vfio", 4))
			snprintf(name, sizeof(name), "%s", de->d_name);
	closedir(dir);
	if (!*name)
		return ep_set_err(EP_ERR, "%s holds no vfioN entry", path);
	snprintf(v->node, sizeof(v->node), "/dev/vfio/devices/%s", name);
	snprintf(devfile, sizeof(devfile), "%s/%s/dev", path, name);
	v->fd = open_chardev(v->node, devfile);
	if (v->fd < 0) {
		/* vfio-dev/vfioN exists without CONFIG_VFIO_DEVICE_CDEV, but has no dev number. */
		if (errno == ENOENT)
			return ep_set_err(EP_UNSUP, "VFIO device cdev (no %s: "
					  "CONFIG_VFIO_DEVICE_CDEV, which needs CONFIG_IOMMUFD)",
					  devfile);
		return ep_set_err(EP_ERR, "open %s: %s (errno %d)", v->node, strerror(errno),
				  errno);
	}
	return EP_OK;
}

int vfio_bind_iommufd(struct vfio_dev *v, int iommufd)
{
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = iommufd };

	if (ioctl(v->fd, VFIO_DEVICE_BIND_IOMMUFD, &bind))
		return ep_set_err(errno_status(errno), "VFIO_DEVICE_BIND_IOMMUFD on %s: %s "
				  "(errno %d)", v->node, strerror(errno), errno);
	v->dev_id = bind.out_devid;
	return EP_OK;
}

static int region_info(struct vfio_dev *v, unsigned index, struct vfio_region_info *ri)
{
	memset(ri, 0, sizeof(*ri));
	ri->argsz = sizeof(*ri);
	ri->index = index;
	if (ioctl(v->fd, VFIO_DEVICE_GET_REGION_INFO, ri))
		return ep_set_err(EP_ERR, "VFIO_DEVICE_GET_REGION_INFO(%u): %s (errno %d)", index,
				  strerror(errno), errno);
	return EP_OK;
}

int vfio_config_region(struct vfio_dev *v)
{
	struct vfio_region_info ri;
	int rc = region_info(v, VFIO_PCI_CONFIG_REGION_INDEX, &ri);

	if (rc)
		return rc;
	v->cfg_off = ri.offset;
	return EP_OK;
}

int vfio_map_bar(struct vfio_dev *v, unsigned bar, size_t min_size, volatile uint8_t **map,
		 size_t *size)
{
	struct vfio_region_info ri;
	void *p;
	int rc = region_info(v, VFIO_PCI_BAR0_REGION_INDEX + bar, &ri);

	if (rc)
		return rc;
	if (!(ri.flags & VFIO_REGION_INFO_FLAG_MMAP) || ri.size < min_size)
		return ep_set_err(EP_ERR, "BAR%u region: flags 0x%x size 0x%llx, need mmap and "
				  "0x%zx bytes", bar, ri.flags, (unsigned long long)ri.size,
				  min_size);
	p = mmap(NULL, ri.size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, (off_t)ri.offset);
	if (p == MAP_FAILED)
		return ep_set_err(EP_ERR, "mmap BAR%u (0x%llx bytes at 0x%llx): %s", bar,
				  (unsigned long long)ri.size, (unsigned long long)ri.offset,
				  strerror(errno));
	*map = p;
	*size = ri.size;
	return EP_OK;
}

void vfio_close(struct vfio_dev *v)
{
	if (v->fd >= 0)
		close(v->fd);
	vfio_init(v);
}

/* ------------------------------------------------------------------------------------- */
/* Attach */

int vfio_attach_pt(struct vfio_dev *v, uint32_t pt_id)
{
	/* argsz covers only the fields every kernel knows (up to pt_id). */
	struct vfio_device_attach_iommufd_pt a = {
		.argsz = offsetof(struct vfio_device_attach_iommufd_pt, pt_id) + sizeof(a.pt_id),
		.pt_id = pt_id,
	};

	if (ioctl(v->fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &a))
		return ep_set_err(errno_status(errno), "VFIO_DEVICE_ATTACH_IOMMUFD_PT pt %u: %s "
				  "(errno %d)", pt_id, strerror(errno), errno);
	return EP_OK;
}

int vfio_detach_pt(struct vfio_dev *v)
{
#ifdef VFIO_DEVICE_DETACH_IOMMUFD_PT
	struct vfio_device_detach_iommufd_pt d = {
		.argsz = offsetof(struct vfio_device_detach_iommufd_pt, flags) + sizeof(d.flags),
	};

	if (ioctl(v->fd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &d))
		return ep_set_err(errno_status(errno), "VFIO_DEVICE_DETACH_IOMMUFD_PT: %s "
				  "(errno %d)", strerror(errno), errno);
	return EP_OK;
#else
	(void)v;
	return ep_set_err(EP_UNSUP, "iommufd detach to blocked (no "
			  "VFIO_DEVICE_DETACH_IOMMUFD_PT in this uapi)");
#endif
}

bool vfio_pasid_uapi(void)
{
#ifdef VFIO_DEVICE_ATTACH_PASID
	return true;
#else
	return false;
#endif
}

uint32_t vfio_hwpt_pasid_flag(void)
{
#ifdef VFIO_DEVICE_ATTACH_PASID
	/* The uapi that has PASID attach requires PASID-compatible domains on the RID too. */
	return IOMMU_HWPT_ALLOC_PASID;
#else
	return 0;
#endif
}

int vfio_attach_pasid(struct vfio_dev *v, uint32_t pasid, uint32_t pt_id)
{
#ifdef VFIO_DEVICE_ATTACH_PASID
	struct vfio_device_attach_iommufd_pt a = {
		.argsz = sizeof(a), .flags = VFIO_DEVICE_ATTACH_PASID, .pt_id = pt_id,
		.pasid = pasid,
	};

	if (ioctl(v->fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &a))
		return ep_set_err(errno_status(errno), "VFIO_DEVICE_ATTACH_IOMMUFD_PT pasid %u "
				  "pt %u: %s (errno %d)", pasid, pt_id, strerror(errno), errno);
	return EP_OK;
#else
	(void)v; (void)pasid; (void)pt_id;
	return ep_set_err(EP_UNSUP, "PASID attach (no VFIO_DEVICE_ATTACH_PASID in this uapi)");
#endif
}

int vfio_detach_pasid(struct vfio_dev *v, uint32_t pasid)
{
#ifdef VFIO_DEVICE_DETACH_PASID
	struct vfio_device_detach_iommufd_pt d = {
		.argsz = sizeof(d), .flags = VFIO_DEVICE_DETACH_PASID, .pasid = pasid,
	};

	if (ioctl(v->fd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &d))
		return ep_set_err(errno_status(errno), "VFIO_DEVICE_DETACH_IOMMUFD_PT pasid %u: "
				  "%s (errno %d)", pasid, strerror(errno), errno);
	return EP_OK;
#else
	(void)v; (void)pasid;
	return ep_set_err(EP_UNSUP, "PASID detach (no VFIO_DEVICE_DETACH_PASID in this uapi)");
#endif
}
