/* SPDX-License-Identifier: MIT */
/* The endpoint's DMA engine (dma.c): one descriptor at a time, run to completion. */
#ifndef COSIM_DMA_H
#define COSIM_DMA_H

#include <stdint.h>

#include "ep.h"

struct dma_desc {
	uint32_t op, flags, pasid;
	uint64_t src, dst, len, pattern;
};
struct dma_res {
	uint32_t status;
	uint64_t result;
};
/* Run one descriptor; EP_ERR only when DMA_STATUS never shows done. */
int ep_dma(struct ep *ep, const struct dma_desc *d, struct dma_res *r);
unsigned dma_err_code(uint32_t status);
const char *dma_err_name(unsigned code);

#endif /* COSIM_DMA_H */
