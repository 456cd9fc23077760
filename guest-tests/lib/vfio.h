/* SPDX-License-Identifier: MIT */
/*
 * A PCI function bound to vfio-pci, as a VFIO device cdev bound to an iommufd (vfio.c): its
 * config region and BARs, and the attach / replace / detach of its RID and its PASIDs to
 * iommufd page tables, the calls whose hitless behaviour the tests observe.
 */
#ifndef COSIM_VFIO_H
#define COSIM_VFIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "pci.h"

struct vfio_dev {
	int fd;             /* /dev/vfio/devices/vfioN, -1 when closed */
	char node[64];
	uint32_t dev_id;    /* the device's ID in the iommufd it is bound to */
	uint64_t cfg_off;   /* offset of the config region in fd */
};

void vfio_init(struct vfio_dev *v);
/* Open the cdev of a function bound to vfio-pci (EP_UNSUP without CONFIG_VFIO_DEVICE_CDEV). */
int vfio_open_cdev(struct vfio_dev *v, const struct pci_dev *d);
/* VFIO_DEVICE_BIND_IOMMUFD: from here the device is in iommufd's blocked state. */
int vfio_bind_iommufd(struct vfio_dev *v, int iommufd);
/* Locate the config region (cfg_off). */
int vfio_config_region(struct vfio_dev *v);
/* mmap BAR `bar`, which must allow mmap and hold at least min_size bytes. */
int vfio_map_bar(struct vfio_dev *v, unsigned bar, size_t min_size, volatile uint8_t **map,
		 size_t *size);
void vfio_close(struct vfio_dev *v);

/* Attach the RID to a HWPT/IOAS; a second call replaces the domain (hitless path). */
int vfio_attach_pt(struct vfio_dev *v, uint32_t pt_id);
/* Detach the RID: the device goes to the blocked domain (EP_UNSUP without the uapi). */
int vfio_detach_pt(struct vfio_dev *v);
/* PASID attach/replace/detach (EP_UNSUP when the uapi or kernel lacks it). */
int vfio_attach_pasid(struct vfio_dev *v, uint32_t pasid, uint32_t pt_id);
int vfio_detach_pasid(struct vfio_dev *v, uint32_t pasid);
/* The uapi these tests were built against has PASID attach. */
bool vfio_pasid_uapi(void);
/* HWPT flag that makes a domain usable with PASIDs, 0 when the uapi has none. */
uint32_t vfio_hwpt_pasid_flag(void);

#endif /* COSIM_VFIO_H */
