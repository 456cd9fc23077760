// SPDX-License-Identifier: MIT
/* The endpoint's DMA engine (docs/endpoint.md): descriptor registers, doorbell, status. */
#include "dma.h"

#define DMA_DONE_TIMEOUT_MS 5000
#define WAIT_POLL_MS 1

int ep_dma(struct ep *ep, const struct dma_desc *d, struct dma_res *r)
{
	uint64_t deadline;

	ep_wr32(ep, COSIM_EP_DMA_OP, d->op);
	ep_wr32(ep, COSIM_EP_DMA_FLAGS, d->flags);
	ep_wr64(ep, COSIM_EP_DMA_SRC, d->src);
	ep_wr64(ep, COSIM_EP_DMA_DST, d->dst);
	ep_wr64(ep, COSIM_EP_DMA_LEN, d->len);
	ep_wr64(ep, COSIM_EP_DMA_PATTERN, d->pattern);
	ep_wr32(ep, COSIM_EP_DMA_PASID, d->pasid);
	ep_wr32(ep, COSIM_EP_DMA_DOORBELL, 1);
	/* The engine completes before the doorbell write returns; poll only as a safety net. */
	deadline = now_ms() + DMA_DONE_TIMEOUT_MS;
	do {
		r->status = ep_rd32(ep, COSIM_EP_DMA_STATUS);
		if (r->status & COSIM_EP_DMA_STATUS_DONE)
			break;
		sleep_ms(WAIT_POLL_MS);
	} while (now_ms() < deadline);
	r->result = ep_rd64(ep, COSIM_EP_DMA_RESULT);
	if (!(r->status & COSIM_EP_DMA_STATUS_DONE))
		return ep_set_err(EP_ERR, "DMA op %u never done after %u ms: DMA_STATUS 0x%08x "
				  "DMA_RESULT 0x%llx", d->op, DMA_DONE_TIMEOUT_MS, r->status,
				  (unsigned long long)r->result);
	return EP_OK;
}

unsigned dma_err_code(uint32_t status)
{
	return (status >> COSIM_EP_DMA_STATUS_ERR_SHIFT) & COSIM_EP_DMA_STATUS_ERR_MASK;
}

const char *dma_err_name(unsigned code)
{
	switch (code) {
	case COSIM_EP_DMA_ERR_NONE: return "none";
	case COSIM_EP_DMA_ERR_XLATE: return "translation fault/abort";
	case COSIM_EP_DMA_ERR_ATS: return "ATS failure";
	case COSIM_EP_DMA_ERR_BME: return "bus master off";
	case COSIM_EP_DMA_ERR_ATS_OFF: return "ATS disabled";
	case COSIM_EP_DMA_ERR_BAD_DESC: return "bad descriptor";
	default: return "unknown";
	}
}
