/* SPDX-License-Identifier: MIT */
/*
 * cosim-pcie-ep as the tests drive it (ep.c): found on the PCI bus, opened as a userspace
 * driver (VFIO cdev + iommufd, or plain sysfs), BAR0 registers and trace markers, and the
 * RID/PASID attaches whose undoing at the end of a case this module owns (docs/endpoint.md).
 * The DMA engine (dma.h) and the traffic generator (tg.h) are register blocks of it.
 */
#ifndef COSIM_EP_LIB_H
#define COSIM_EP_LIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cosim_ep.h"
#include "status.h"
#include "pci.h"
#include "vfio.h"

/* IOVAs the tests use: far from the MSI window Linux reserves at 0x08000000 on arm64. */
#define IOVA_BASE 0x40000000ULL

struct ep_teardown;

struct ep {
	struct pci_dev pci;
	struct vfio_dev vfio;      /* fd -1 unless opened through VFIO */
	int iommufd;               /* -1 unless opened through VFIO */
	volatile uint8_t *bar;     /* BAR0 */
	size_t bar_size;
	struct ep_teardown *td;    /* what the end of the case undoes (ep_open_vfio) */
};

/* Find the endpoint (by BDF, or the first 1b36:0120) and its capabilities; no driver change. */
int ep_find(struct ep *ep, const char *bdf);
/* ep_find + bind vfio-pci (nothing opened): the kernel probes the device into the IOMMU at
 * this point (with DT it has no group before a driver binds); the group is re-read. */
int ep_bind_vfio(struct ep *ep, const char *bdf);
/*
 * ep_find + bind vfio-pci + open the cdev and /dev/iommu + BIND_IOMMUFD + map BAR0 + reset
 * the endpoint. The device is then in iommufd's blocked state until ep_attach. At the end of
 * the case (a teardown hook) the generator is stopped, Bus Master cleared and the PASID and
 * RID detached under markers, unless ep_close ran first: undoing it there rather than at
 * close() keeps the domain changes inside marked windows for the analyser.
 */
int ep_open_vfio(struct ep *ep, const char *bdf);
/* ep_find + unbind any driver + map BAR0 through sysfs resource0 (no DMA ownership taken). */
int ep_open_sysfs(struct ep *ep, const char *bdf);
void ep_close(struct ep *ep);
/* Map BAR0 (sysfs resource0) of a device a kernel driver owns, such as the guest-kmod test
 * driver: no driver change, no reset; ep_find first. */
int ep_map_bar(struct ep *ep);

/* Attach the RID to a HWPT/IOAS; a second call replaces the domain (hitless path). */
int ep_attach(struct ep *ep, uint32_t pt_id);
/* Detach the RID: the device goes to the blocked domain. */
int ep_detach(struct ep *ep);
/* ep_attach / ep_detach between attach-begin/attach-end markers (value i, label), so the
 * trace analyser sees every domain change of the RID, set-up and teardown included. */
int ep_attach_marked(struct ep *ep, uint32_t pt_id, uint64_t i, const char *label);
int ep_detach_marked(struct ep *ep, uint64_t i, const char *label);
/* PASID attach/replace/detach (EP_UNSUP when the uapi or kernel lacks it). */
int ep_attach_pasid(struct ep *ep, uint32_t pasid, uint32_t pt_id);
int ep_detach_pasid(struct ep *ep, uint32_t pasid);

/* A paging domain of its own: a zeroed buffer mapped at iova in a new IOAS, and a HWPT
 * allocated from that IOAS for the endpoint (hwpt_flags: IOMMU_HWPT_ALLOC_* flags). */
struct domain {
	uint32_t ioas, hwpt;
	void *buf;
	uint64_t iova, len;
};
int ep_domain(struct ep *ep, struct domain *d, uint64_t iova, uint64_t len, uint32_t hwpt_flags);

/* Registers */
uint32_t ep_rd32(struct ep *ep, uint32_t off);
uint64_t ep_rd64(struct ep *ep, uint32_t off);
void ep_wr32(struct ep *ep, uint32_t off, uint32_t val);
void ep_wr64(struct ep *ep, uint32_t off, uint64_t val);
void ep_reset(struct ep *ep);
/* Record a (tag, value, label) marker in the model's trace. */
void ep_marker(struct ep *ep, uint32_t tag, uint64_t value, const char *label);

#endif /* COSIM_EP_LIB_H */
