/* SPDX-License-Identifier: MIT */
/*
 * A PCI function as sysfs shows it (pci.c): found by address or ID, its IOMMU group, its
 * config space (the ATS and PASID extended capabilities, Command), its driver binding and
 * its BARs through sysfs resource files. Nothing here knows VFIO or the endpoint.
 */
#ifndef COSIM_PCI_H
#define COSIM_PCI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "status.h"

struct pci_dev {
	char bdf[32];
	char sysdir[160];   /* /sys/bus/pci/devices/<bdf> */
	int group;          /* IOMMU group number, -1 when none */
	uint16_t ats_cap;   /* config offsets of the extended capabilities, 0 when absent */
	uint16_t pasid_cap;
	int cfgfd;          /* sysfs config file */
	/* Where config writes (and Command reads) go: the sysfs config file, or the owner's
	 * view of config space (pci_cfg_owner) so that the owner's virtual config stays in
	 * step with what the tests write. */
	int owner_fd;
	off_t owner_off;
};

/* Find the function at bdf, or (bdf NULL) the first vendor:device, open its config space and
 * locate its capabilities; no driver change. */
int pci_find(struct pci_dev *d, const char *bdf, uint16_t vendor, uint16_t device);
void pci_close(struct pci_dev *d);
/* Re-read the IOMMU group: with DT it appears when a driver first binds. */
void pci_read_group(struct pci_dev *d);

/* Config space. Reads of capability state come from sysfs: the real register. */
int pci_cfg_read16(struct pci_dev *d, unsigned off, uint16_t *val);
int pci_cfg_write16(struct pci_dev *d, unsigned off, uint16_t val);
/* Send config writes and Command reads through fd at offset off from now on. */
void pci_cfg_owner(struct pci_dev *d, int fd, off_t off);
int pci_ats_enabled(struct pci_dev *d, bool *on);    /* ATS Control.Enable (bit 15) */
int pci_pasid_enabled(struct pci_dev *d, bool *on);  /* PASID Control.Enable (bit 0) */
int pci_bus_master(struct pci_dev *d, bool on);      /* Command: Memory Space + Bus Master */
int pci_memory_enable(struct pci_dev *d);            /* Command: Memory Space */

/* Driver binding. */
const char *pci_driver(struct pci_dev *d, char *buf, size_t len); /* "" when none */
int pci_unbind_driver(struct pci_dev *d); /* unbind whatever driver holds the device */
/* Bind driver drv through driver_override (EP_UNSUP when the kernel has no such driver). */
int pci_bind_driver(struct pci_dev *d, const char *drv);

/* Map BAR `bar` through sysfs resource<bar> (no driver, no DMA ownership). */
int pci_map_resource(struct pci_dev *d, unsigned bar, volatile uint8_t **map, size_t *size);

#endif /* COSIM_PCI_H */
