/* SPDX-License-Identifier: MIT */
/*
 * The endpoint's traffic generator and counters (tg.c), and the records it leaves in
 * memory. A switch under test is bracketed by ep_tg_read() before and ep_tg_read_ret()
 * after (guest-tests/README.md, "Windows").
 */
#ifndef COSIM_TG_H
#define COSIM_TG_H

#include <stdbool.h>
#include <stdint.h>

#include "ep.h"

struct tg_cfg {
	uint64_t base, size, tag;
	uint32_t stride, rate, pasid;
	bool ats, use_pasid, readback;
};
struct tg_counters {
	uint64_t seq, writes, xlate_fail, aborts, ats_err, mismatch;
};
void ep_tg_start(struct ep *ep, const struct tg_cfg *c);
void ep_tg_stop(struct ep *ep);
/* Snapshot before an operation: TG_SEQ first, the outcome counters last (as close to the
 * operation as possible), so failures of records issued before the operation are counted. */
void ep_tg_read(struct ep *ep, struct tg_counters *c);
/* Snapshot after an operation returned: the outcome counters first, TG_SEQ last, so every
 * record numbered >= seq was issued after the counters were read (after the return). */
void ep_tg_read_ret(struct ep *ep, struct tg_counters *c);
uint64_t tg_failures(const struct tg_counters *c); /* xlate_fail + aborts + ats_err */
/* Wait until TG_SEQ >= target; EP_ERR (with the counters) on timeout. */
int ep_tg_wait_seq(struct ep *ep, uint64_t target, unsigned timeout_ms, struct tg_counters *c);
void tg_diag(const char *what, const struct tg_counters *c);

struct ep_counters {
	uint64_t ats_req, atc_hit, atc_miss, inv_req, inv_cpl, bm_drop, ats_drop, faults;
};
void ep_counters_read(struct ep *ep, struct ep_counters *c);
void counters_diag(const char *what, const struct ep_counters *c);

/* Traffic-generator records found in a buffer that the device sees at iova. */
struct tg_scan {
	uint64_t records;     /* slots holding a record (magic matches) */
	uint64_t max_seq;     /* valid when records > 0 */
	uint64_t max_seq_off; /* buffer offset of the record with max_seq */
	uint64_t max_seq_tag;
	uint64_t misplaced;   /* records whose iova field is not the slot's IOVA */
	uint64_t first_misplaced_off;
};
void tg_scan(const void *buf, uint64_t len, uint64_t iova, uint32_t stride, struct tg_scan *s);

#endif /* COSIM_TG_H */
