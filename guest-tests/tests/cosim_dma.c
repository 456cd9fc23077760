// SPDX-License-Identifier: MIT
/*
 * Area 2: the DMA engine through an iommufd paging domain, untranslated and with ATS.
 * Data is verified byte for byte; the ATS cases also prove that ATS was really used
 * (translation requests sent, ATC hits on a second pass) and that it stayed enabled.
 */
#include <stdio.h>
#include <string.h>

#include <linux/pci_regs.h>

#include "cosim.h"

#define FILL_PATTERN 0x0123456789abcdefULL

struct ctx {
	struct ep ep;
	struct domain dom; /* src buffer at IOVA_BASE */
	uint8_t *src, *dst;
	uint64_t src_iova, dst_iova, len;
};

/* A paging domain with src at IOVA_BASE and dst right after it, attached, bus master on. */
static int setup(struct ctx *c, const struct opts *o)
{
	int rc;

	rc = ep_open_vfio(&c->ep, o->bdf);
	if (rc)
		return rc;
	c->len = o->size;
	rc = ep_domain(&c->ep, &c->dom, IOVA_BASE, c->len, 0);
	if (rc)
		return rc;
	c->src = c->dom.buf;
	c->src_iova = IOVA_BASE;
	c->dst_iova = IOVA_BASE + c->len;
	c->dst = dma_buf(c->len);
	if (!c->dst)
		return EP_ERR;
	rc = iommufd_ioas_map(c->ep.iommufd, c->dom.ioas, c->dst, c->len, c->dst_iova);
	if (rc)
		return rc;
	rc = ep_attach_marked(&c->ep, c->dom.hwpt, 0, "set-up: attach");
	if (rc)
		return rc;
	return pci_bus_master(&c->ep.pci, true);
}

static void fill_cpu(uint8_t *p, uint64_t len, uint32_t seed)
{
	for (uint64_t i = 0; i < len; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (uint8_t)(seed >> 16);
	}
}

static enum result dma_ok(const struct dma_desc *d, const struct dma_res *r)
{
	EXPECT(!(r->status & COSIM_EP_DMA_STATUS_ERROR),
	       "DMA op %u flags 0x%x src 0x%llx dst 0x%llx len 0x%llx: DMA_STATUS 0x%08x error "
	       "code %u (%s), DMA_RESULT 0x%llx", d->op, d->flags, (unsigned long long)d->src,
	       (unsigned long long)d->dst, (unsigned long long)d->len, r->status,
	       dma_err_code(r->status), dma_err_name(dma_err_code(r->status)),
	       (unsigned long long)r->result);
	return R_PASS;
}

static enum result check_ats_state(struct ctx *c, bool ats)
{
	struct ep_counters k;
	bool on;

	ep_counters_read(&c->ep, &k);
	counters_diag("after DMA", &k);
	TRY("read ATS Control", pci_ats_enabled(&c->ep.pci, &on));
	diag("ATS Control.Enable (config 0x%x) after DMA: %d", c->ep.pci.ats_cap + PCI_ATS_CTRL,
	     on);
	EXPECT(on, "ATS Control.Enable clear with a paging HWPT attached");
	EXPECT(!k.faults, "CNT_FAULTS %llu after DMA that completed without error",
	       (unsigned long long)k.faults);
	if (ats)
		EXPECT(k.ats_req > 0, "DMA with DMA_FLAGS.ATS completed but CNT_ATS_REQ is 0");
	else
		EXPECT(k.ats_req == 0, "untranslated DMA sent %llu ATS requests (CNT_ATS_REQ)",
		       (unsigned long long)k.ats_req);
	return R_PASS;
}

static enum result copy(const struct opts *o, bool ats)
{
	struct ctx c;
	struct dma_desc d;
	struct dma_res r;
	struct ep_counters k1, k2;
	enum result res;

	TRY("set up paging domain", setup(&c, o));
	fill_cpu(c.src, c.len, 0xc05);
	memset(c.dst, 0, c.len);
	d = (struct dma_desc){ .op = COSIM_EP_DMA_OP_COPY, .src = c.src_iova, .dst = c.dst_iova,
			       .len = c.len, .flags = ats ? COSIM_EP_DMA_FLAG_ATS : 0 };
	ep_marker(&c.ep, COSIM_EP_MARKER_TAG_TEST_BEGIN, 1, ats ? "dma copy ats" : "dma copy");
	TRY("DMA copy", ep_dma(&c.ep, &d, &r));
	if ((res = dma_ok(&d, &r)) != R_PASS)
		return res;
	for (uint64_t i = 0; i < c.len; i++)
		EXPECT(c.dst[i] == c.src[i], "dst[0x%llx] = 0x%02x, src 0x%02x (copy of 0x%llx "
		       "bytes, IOVA 0x%llx -> 0x%llx)", (unsigned long long)i, c.dst[i], c.src[i],
		       (unsigned long long)c.len, (unsigned long long)c.src_iova,
		       (unsigned long long)c.dst_iova);
	if ((res = check_ats_state(&c, ats)) != R_PASS)
		return res;
	if (ats) {
		/* One page copied twice: the second copy must be served from the ATC. A single
		 * page pair fits whatever ATC_SIZE is, so LRU eviction cannot hide the hits. */
		struct dma_desc one = d;

		one.len = PAGE_SZ;
		TRY("one-page DMA copy", ep_dma(&c.ep, &one, &r));
		if ((res = dma_ok(&one, &r)) != R_PASS)
			return res;
		ep_counters_read(&c.ep, &k1);
		TRY("same one-page DMA copy again", ep_dma(&c.ep, &one, &r));
		if ((res = dma_ok(&one, &r)) != R_PASS)
			return res;
		ep_counters_read(&c.ep, &k2);
		counters_diag("after the repeated one-page copy", &k2);
		EXPECT(k2.atc_hit > k1.atc_hit, "repeated copy of one page (IOVA 0x%llx -> 0x%llx): "
		       "CNT_ATC_HIT %llu -> %llu, expected hits (ATC_SIZE %u)",
		       (unsigned long long)one.src, (unsigned long long)one.dst,
		       (unsigned long long)k1.atc_hit, (unsigned long long)k2.atc_hit,
		       ep_rd32(&c.ep, COSIM_EP_ATC_SIZE));
		EXPECT(!memcmp(c.dst, c.src, c.len), "dst differs from src after the repeated copy");
	}
	ep_marker(&c.ep, COSIM_EP_MARKER_TAG_TEST_END, 1, NULL);
	return R_PASS;
}

static enum result fill(const struct opts *o, bool ats)
{
	struct ctx c;
	struct dma_desc d;
	struct dma_res r;
	enum result res;
	uint64_t pat = FILL_PATTERN;
	const uint8_t *pb = (const uint8_t *)&pat;

	TRY("set up paging domain", setup(&c, o));
	memset(c.dst, 0, c.len);
	d = (struct dma_desc){ .op = COSIM_EP_DMA_OP_FILL, .dst = c.dst_iova, .len = c.len,
			       .pattern = pat, .flags = ats ? COSIM_EP_DMA_FLAG_ATS : 0 };
	ep_marker(&c.ep, COSIM_EP_MARKER_TAG_TEST_BEGIN, 2, ats ? "dma fill ats" : "dma fill");
	TRY("DMA fill", ep_dma(&c.ep, &d, &r));
	if ((res = dma_ok(&d, &r)) != R_PASS)
		return res;
	/* The 8-byte pattern is stored little-endian, repeated from the start of dst. */
	for (uint64_t i = 0; i < c.len; i++)
		EXPECT(c.dst[i] == pb[i % 8], "dst[0x%llx] = 0x%02x, pattern byte 0x%02x (fill of "
		       "0x%llx bytes at IOVA 0x%llx)", (unsigned long long)i, c.dst[i], pb[i % 8],
		       (unsigned long long)c.len, (unsigned long long)c.dst_iova);
	ep_marker(&c.ep, COSIM_EP_MARKER_TAG_TEST_END, 2, NULL);
	return check_ats_state(&c, ats);
}

static enum result copy_untranslated(const struct opts *o) { return copy(o, false); }
static enum result copy_ats(const struct opts *o)
{
	return o->ats ? copy(o, true) : skip("--no-ats");
}
static enum result fill_untranslated(const struct opts *o) { return fill(o, false); }
static enum result fill_ats(const struct opts *o)
{
	return o->ats ? fill(o, true) : skip("--no-ats");
}

static enum result compare(const struct opts *o)
{
	struct ctx c;
	struct dma_desc d;
	struct dma_res r;
	enum result res;
	uint64_t diff_at;

	TRY("set up paging domain", setup(&c, o));
	diff_at = c.len / 2 + 13;
	fill_cpu(c.src, c.len, 0xc07);
	memcpy(c.dst, c.src, c.len);
	d = (struct dma_desc){ .op = COSIM_EP_DMA_OP_COMPARE, .src = c.src_iova,
			       .dst = c.dst_iova, .len = c.len };
	TRY("DMA compare (equal)", ep_dma(&c.ep, &d, &r));
	if ((res = dma_ok(&d, &r)) != R_PASS)
		return res;
	EXPECT(!(r.status & COSIM_EP_DMA_STATUS_MISCOMPARE), "equal buffers: DMA_STATUS 0x%08x "
	       "reports a miscompare at 0x%llx", r.status, (unsigned long long)r.result);
	c.dst[diff_at] ^= 0x5a;
	TRY("DMA compare (one byte differs)", ep_dma(&c.ep, &d, &r));
	if ((res = dma_ok(&d, &r)) != R_PASS)
		return res;
	EXPECT(r.status & COSIM_EP_DMA_STATUS_MISCOMPARE, "byte 0x%llx differs but DMA_STATUS "
	       "0x%08x has no miscompare", (unsigned long long)diff_at, r.status);
	EXPECT(r.result == diff_at, "first difference at 0x%llx, DMA_RESULT says 0x%llx",
	       (unsigned long long)diff_at, (unsigned long long)r.result);
	return R_PASS;
}

/* Fill two pages starting at the last mapped page of dst: the second page is unmapped. */
static enum result fault(const struct opts *o, bool ats)
{
	struct ctx c;
	struct dma_desc d;
	struct dma_res r;
	struct ep_counters k;
	uint64_t pat = FILL_PATTERN;
	const uint8_t *pb = (const uint8_t *)&pat;
	unsigned code;
	uint64_t last = o->size - PAGE_SZ; /* offset of dst's last page */

	TRY("set up paging domain", setup(&c, o));
	d = (struct dma_desc){ .op = COSIM_EP_DMA_OP_FILL, .dst = c.dst_iova + last,
			       .len = 2 * PAGE_SZ, .pattern = pat,
			       .flags = ats ? COSIM_EP_DMA_FLAG_ATS : 0 };
	ep_marker(&c.ep, COSIM_EP_MARKER_TAG_TEST_BEGIN, 3, ats ? "dma fault ats" : "dma fault");
	TRY("DMA fill across the end of the mapping", ep_dma(&c.ep, &d, &r));
	code = dma_err_code(r.status);
	ep_counters_read(&c.ep, &k);
	diag("fill IOVA 0x%llx len 0x%llx (second page unmapped): DMA_STATUS 0x%08x code %u "
	     "(%s) DMA_RESULT 0x%llx", (unsigned long long)d.dst, (unsigned long long)d.len,
	     r.status, code, dma_err_name(code), (unsigned long long)r.result);
	counters_diag("after the faulting DMA", &k);
	EXPECT(r.status & COSIM_EP_DMA_STATUS_ERROR, "DMA into unmapped IOVA 0x%llx completed "
	       "without error", (unsigned long long)(d.dst + PAGE_SZ));
	if (ats)
		EXPECT(code == COSIM_EP_DMA_ERR_XLATE || code == COSIM_EP_DMA_ERR_ATS,
		       "error code %u (%s), expected %u or %u", code, dma_err_name(code),
		       COSIM_EP_DMA_ERR_XLATE, COSIM_EP_DMA_ERR_ATS);
	else
		EXPECT(code == COSIM_EP_DMA_ERR_XLATE, "error code %u (%s), expected %u "
		       "(translation fault)", code, dma_err_name(code), COSIM_EP_DMA_ERR_XLATE);
	EXPECT(r.result == PAGE_SZ, "DMA_RESULT %llu bytes done before the fault, expected %llu "
	       "(the mapped page)", (unsigned long long)r.result, PAGE_SZ);
	EXPECT(k.faults > 0, "CNT_FAULTS is 0 after a faulting DMA");
	for (uint64_t i = 0; i < PAGE_SZ; i++)
		EXPECT(c.dst[last + i] == pb[i % 8], "mapped page byte 0x%llx = 0x%02x, pattern "
		       "0x%02x", (unsigned long long)i, c.dst[last + i], pb[i % 8]);
	ep_marker(&c.ep, COSIM_EP_MARKER_TAG_TEST_END, 3, NULL);
	return R_PASS;
}

static enum result fault_untranslated(const struct opts *o) { return fault(o, false); }
static enum result fault_ats(const struct opts *o)
{
	return o->ats ? fault(o, true) : skip("--no-ats");
}

static const struct tcase cases[] = {
	TCASE(copy_untranslated, "copy --size bytes, untranslated DMA"),
	TCASE(fill_untranslated, "fill --size bytes, untranslated DMA"),
	TCASE(copy_ats, "copy with ATS: data, ATS requests, ATC hits on a second pass"),
	TCASE(fill_ats, "fill with ATS: data, ATS requests, ATS stays enabled"),
	TCASE(compare, "compare op: equal buffers, then the offset of a changed byte"),
	TCASE(fault_untranslated,
	      "fill across the end of the mapping: translation fault after one page"),
	TCASE(fault_ats, "the same with ATS: error after one page"),
};

COSIM_SUITE(cosim_dma, cases,
	    .summary = "DMA engine through an iommufd paging domain, with and without ATS.",
	    .params = "--size --no-ats --bdf --only",
	    .defaults = { .count = 1, .settle = 8, .timeout_ms = 5000, .rate = 1, .stride = 64,
			  .pasid = 1, .case_timeout_s = 120, .size = 0x10000, .ats = true });
