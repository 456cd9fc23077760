/* SPDX-License-Identifier: MIT */
/*
 * The ioctls of the cosim_ep_dma test driver's "sva" debugfs file (guest-kmod/cosim_ep_dma.c),
 * shared by the module and the guest tests (tests/cosim_sva.c). An open file of it is one
 * SVA bond at most: BIND binds the calling process's address space to the endpoint
 * (iommu_sva_bind_device(), after enabling the SVA feature where the kernel has that step)
 * and returns its PASID; UNBIND, or closing the file, unbinds it. SWITCH runs the kswitch
 * case named by its flags with the traffic generator sweeping the process's buffer through
 * the bound PASID, while the driver switches the device's RID between its default domain and
 * an unmanaged paging domain; it returns the case's result line, as the kswitch debugfs
 * files print it.
 */
#ifndef COSIM_KMOD_UAPI_H
#define COSIM_KMOD_UAPI_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define COSIM_KMOD_LINE_BYTES 1024

struct cosim_sva_bind {
	__u32 pasid;   /* out */
	__u32 pad;
};

/* SWITCH flags */
#define COSIM_SVA_SWITCH_IDENTITY 0x1  /* default domain identity (else DMA) */
#define COSIM_SVA_SWITCH_ATS      0x2  /* the PASID traffic and the RID's copies use ATS */

struct cosim_sva_switch {
	__u64 base, size;   /* in: the process's buffer (page aligned, locked and written) */
	__u32 flags;        /* in: COSIM_SVA_SWITCH_* */
	__u32 pad;
	char line[COSIM_KMOD_LINE_BYTES]; /* out: "ok <case> ..." or "fail <case> ..." */
};

#define COSIM_SVA_IOC_MAGIC 0xC5
#define COSIM_SVA_BIND   _IOR(COSIM_SVA_IOC_MAGIC, 1, struct cosim_sva_bind)
#define COSIM_SVA_UNBIND _IO(COSIM_SVA_IOC_MAGIC, 2)
#define COSIM_SVA_SWITCH _IOWR(COSIM_SVA_IOC_MAGIC, 3, struct cosim_sva_switch)

#endif /* COSIM_KMOD_UAPI_H */
