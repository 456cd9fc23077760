// SPDX-License-Identifier: MIT
/* iommufd: IOAS, mappings, HWPTs (the objects whose attach the tests observe), DMA memory. */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <linux/iommufd.h>

#include "iommufd.h"
#include "sysfs.h"

int iommufd_open(int *fd)
{
	*fd = open_chardev("/dev/iommu", "/sys/class/misc/iommu/dev");
	if (*fd < 0) {
		if (errno == ENOENT)
			return ep_set_err(EP_UNSUP, "iommufd (no /dev/iommu nor "
					  "/sys/class/misc/iommu: CONFIG_IOMMUFD)");
		return ep_set_err(EP_ERR, "open /dev/iommu: %s (errno %d)", strerror(errno),
				  errno);
	}
	return EP_OK;
}

int iommufd_ioas_alloc(int fd, uint32_t *ioas)
{
	struct iommu_ioas_alloc a = { .size = sizeof(a) };

	if (ioctl(fd, IOMMU_IOAS_ALLOC, &a))
		return ep_set_err(errno_status(errno), "IOMMU_IOAS_ALLOC: %s (errno %d)",
				  strerror(errno), errno);
	*ioas = a.out_ioas_id;
	return EP_OK;
}

int iommufd_ioas_map(int fd, uint32_t ioas, void *va, uint64_t len, uint64_t iova)
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

	if (ioctl(fd, IOMMU_IOAS_MAP, &m))
		return ep_set_err(EP_ERR, "IOMMU_IOAS_MAP ioas %u iova 0x%llx len 0x%llx: %s "
				  "(errno %d)", ioas, (unsigned long long)iova,
				  (unsigned long long)len, strerror(errno), errno);
	return EP_OK;
}

int iommufd_ioas_unmap(int fd, uint32_t ioas, uint64_t iova, uint64_t len)
{
	struct iommu_ioas_unmap u = { .size = sizeof(u), .ioas_id = ioas, .iova = iova,
				      .length = len };

	if (ioctl(fd, IOMMU_IOAS_UNMAP, &u))
		return ep_set_err(EP_ERR, "IOMMU_IOAS_UNMAP ioas %u iova 0x%llx len 0x%llx: %s "
				  "(errno %d)", ioas, (unsigned long long)iova,
				  (unsigned long long)len, strerror(errno), errno);
	if (u.length != len)
		return ep_set_err(EP_ERR, "IOMMU_IOAS_UNMAP unmapped 0x%llx bytes, asked 0x%llx",
				  (unsigned long long)u.length, (unsigned long long)len);
	return EP_OK;
}

int iommufd_hwpt_alloc(int fd, uint32_t dev_id, uint32_t pt_id, uint32_t flags,
		       uint32_t *hwpt)
{
	struct iommu_hwpt_alloc a = {
		.size = sizeof(a),
		.flags = flags,
		.dev_id = dev_id,
		.pt_id = pt_id,
		.data_type = IOMMU_HWPT_DATA_NONE,
	};

	if (ioctl(fd, IOMMU_HWPT_ALLOC, &a))
		return ep_set_err(errno_status(errno), "IOMMU_HWPT_ALLOC (paging, flags 0x%x) on "
				  "ioas %u: %s (errno %d)", flags, pt_id, strerror(errno), errno);
	*hwpt = a.out_hwpt_id;
	return EP_OK;
}

int iommufd_destroy(int fd, uint32_t id)
{
	struct iommu_destroy d = { .size = sizeof(d), .id = id };

	if (ioctl(fd, IOMMU_DESTROY, &d))
		return ep_set_err(EP_ERR, "IOMMU_DESTROY %u: %s (errno %d)", id, strerror(errno),
				  errno);
	return EP_OK;
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
