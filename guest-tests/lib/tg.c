// SPDX-License-Identifier: MIT
/* The endpoint's traffic generator and counters (docs/endpoint.md), and its records in memory. */
#include <string.h>

#include "tg.h"

#define WAIT_POLL_MS 1

void ep_tg_start(struct ep *ep, const struct tg_cfg *c)
{
	uint32_t ctrl = COSIM_EP_TG_CTRL_RUN;

	ep_wr64(ep, COSIM_EP_TG_BASE, c->base);
	ep_wr64(ep, COSIM_EP_TG_SIZE, c->size);
	ep_wr32(ep, COSIM_EP_TG_STRIDE, c->stride);
	ep_wr32(ep, COSIM_EP_TG_RATE, c->rate);
	ep_wr32(ep, COSIM_EP_TG_PASID, c->pasid);
	ep_wr64(ep, COSIM_EP_TG_TAG, c->tag);
	if (c->ats)
		ctrl |= COSIM_EP_TG_CTRL_ATS;
	if (c->use_pasid)
		ctrl |= COSIM_EP_TG_CTRL_PASID;
	if (c->readback)
		ctrl |= COSIM_EP_TG_CTRL_READBACK;
	ep_wr32(ep, COSIM_EP_TG_CTRL, ctrl);
}

void ep_tg_stop(struct ep *ep)
{
	ep_wr32(ep, COSIM_EP_TG_CTRL, 0);
}

/* The counters are separate registers and the generator runs between two reads: the order
 * of the reads decides which side of the snapshot those records fall on. */
static void read_outcomes(struct ep *ep, struct tg_counters *c)
{
	c->writes = ep_rd64(ep, COSIM_EP_TG_WRITES);
	c->xlate_fail = ep_rd64(ep, COSIM_EP_TG_XLATE_FAIL);
	c->aborts = ep_rd64(ep, COSIM_EP_TG_ABORTS);
	c->ats_err = ep_rd64(ep, COSIM_EP_TG_ATS_ERR);
	c->mismatch = ep_rd64(ep, COSIM_EP_TG_MISMATCH);
}

void ep_tg_read(struct ep *ep, struct tg_counters *c)
{
	c->seq = ep_rd64(ep, COSIM_EP_TG_SEQ);
	read_outcomes(ep, c);
}

void ep_tg_read_ret(struct ep *ep, struct tg_counters *c)
{
	read_outcomes(ep, c);
	c->seq = ep_rd64(ep, COSIM_EP_TG_SEQ);
}

uint64_t tg_failures(const struct tg_counters *c)
{
	return c->xlate_fail + c->aborts + c->ats_err;
}

int ep_tg_wait_seq(struct ep *ep, uint64_t target, unsigned timeout_ms, struct tg_counters *c)
{
	uint64_t start = now_ms();

	for (;;) {
		ep_tg_read(ep, c);
		if (c->seq >= target)
			return EP_OK;
		if (now_ms() - start >= timeout_ms)
			return ep_set_err(EP_ERR, "generator stalled: TG_SEQ %llu after %u ms, "
					  "waiting for %llu (TG_WRITES %llu, failures %llu)",
					  (unsigned long long)c->seq, timeout_ms,
					  (unsigned long long)target, (unsigned long long)c->writes,
					  (unsigned long long)tg_failures(c));
		sleep_ms(WAIT_POLL_MS);
	}
}

void tg_diag(const char *what, const struct tg_counters *c)
{
	diag("%s: TG_SEQ %llu TG_WRITES %llu TG_XLATE_FAIL %llu TG_ABORTS %llu TG_ATS_ERR %llu "
	     "TG_MISMATCH %llu", what, (unsigned long long)c->seq, (unsigned long long)c->writes,
	     (unsigned long long)c->xlate_fail, (unsigned long long)c->aborts,
	     (unsigned long long)c->ats_err, (unsigned long long)c->mismatch);
}

void ep_counters_read(struct ep *ep, struct ep_counters *c)
{
	c->ats_req = ep_rd64(ep, COSIM_EP_CNT_ATS_REQ);
	c->atc_hit = ep_rd64(ep, COSIM_EP_CNT_ATC_HIT);
	c->atc_miss = ep_rd64(ep, COSIM_EP_CNT_ATC_MISS);
	c->inv_req = ep_rd64(ep, COSIM_EP_CNT_INV_REQ);
	c->inv_cpl = ep_rd64(ep, COSIM_EP_CNT_INV_CPL);
	c->bm_drop = ep_rd64(ep, COSIM_EP_CNT_BM_DROP);
	c->ats_drop = ep_rd64(ep, COSIM_EP_CNT_ATS_DROP);
	c->faults = ep_rd64(ep, COSIM_EP_CNT_FAULTS);
}

void counters_diag(const char *what, const struct ep_counters *c)
{
	diag("%s: CNT_ATS_REQ %llu CNT_ATC_HIT %llu CNT_ATC_MISS %llu CNT_INV_REQ %llu "
	     "CNT_INV_CPL %llu CNT_BM_DROP %llu CNT_ATS_DROP %llu CNT_FAULTS %llu", what,
	     (unsigned long long)c->ats_req, (unsigned long long)c->atc_hit,
	     (unsigned long long)c->atc_miss, (unsigned long long)c->inv_req,
	     (unsigned long long)c->inv_cpl, (unsigned long long)c->bm_drop,
	     (unsigned long long)c->ats_drop, (unsigned long long)c->faults);
}

/* ------------------------------------------------------------------------------------- */
/* Records in memory */

struct tg_record {
	uint64_t magic, seq, iova, tag;
};

/* The device may be writing the slot while we read it: read until two reads agree. */
static void read_record(const volatile uint64_t *slot, struct tg_record *r)
{
	struct tg_record again;

	for (int i = 0; i < 4; i++) {
		r->magic = slot[0];
		r->seq = slot[1];
		r->iova = slot[2];
		r->tag = slot[3];
		again.magic = slot[0];
		again.seq = slot[1];
		again.iova = slot[2];
		again.tag = slot[3];
		if (!memcmp(r, &again, sizeof(again)))
			return;
	}
}

void tg_scan(const void *buf, uint64_t len, uint64_t iova, uint32_t stride, struct tg_scan *s)
{
	memset(s, 0, sizeof(*s));
	for (uint64_t off = 0; off + COSIM_EP_TG_RECORD_SIZE <= len; off += stride) {
		struct tg_record r;

		read_record((const volatile uint64_t *)((const uint8_t *)buf + off), &r);
		if (r.magic != COSIM_EP_TG_RECORD_MAGIC)
			continue;
		if (r.iova != iova + off && s->misplaced++ == 0)
			s->first_misplaced_off = off;
		if (!s->records || r.seq > s->max_seq) {
			s->max_seq = r.seq;
			s->max_seq_off = off;
			s->max_seq_tag = r.tag;
		}
		s->records++;
	}
}
