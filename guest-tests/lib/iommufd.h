/* SPDX-License-Identifier: MIT */
/*
 * iommufd objects (iommufd.c): /dev/iommu, IOAS with their mappings, HWPTs, and memory for
 * DMA. Each call takes the iommufd file descriptor; a HWPT also needs the device ID a VFIO
 * device got when it was bound to that iommufd (vfio.h).
 */
#ifndef COSIM_IOMMUFD_H
#define COSIM_IOMMUFD_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* Open /dev/iommu (EP_UNSUP without CONFIG_IOMMUFD). */
int iommufd_open(int *fd);
int iommufd_ioas_alloc(int fd, uint32_t *ioas);
/* Map va at a fixed iova, readable and writeable. */
int iommufd_ioas_map(int fd, uint32_t ioas, void *va, uint64_t len, uint64_t iova);
/* Unmap exactly [iova, iova + len): EP_ERR when the kernel unmapped another length. */
int iommufd_ioas_unmap(int fd, uint32_t ioas, uint64_t iova, uint64_t len);
/* A paging HWPT over pt_id for device dev_id (flags: IOMMU_HWPT_ALLOC_*). */
int iommufd_hwpt_alloc(int fd, uint32_t dev_id, uint32_t pt_id, uint32_t flags,
		       uint32_t *hwpt);
int iommufd_destroy(int fd, uint32_t id);

/* Anonymous, populated, zeroed, page-aligned memory for DMA. */
void *dma_buf(size_t len);
void dma_buf_free(void *p, size_t len);

#endif /* COSIM_IOMMUFD_H */
