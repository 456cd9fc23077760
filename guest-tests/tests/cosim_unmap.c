// SPDX-License-Identifier: MIT
/*
 * Area 5: unmap under traffic. The generator sweeps a window of --size bytes, mapped one page
 * per IOMMU_IOAS_MAP so that single pages can be unmapped. Pages are unmapped one at a time
 * from the top (--count of them) while the generator keeps running. After IOMMU_IOAS_UNMAP
 * returns, TG_SEQ is read (S); once the generator has swept the whole window again:
 *  - no record with seq >= S is in any unmapped page (no write went through a stale IOTLB or
 *    ATC entry after the unmap returned);
 *  - every still-mapped page got a record with seq >= S (traffic still flows);
 *  - the generator counted failures for the unmapped page (it really wrote there), and none
 *    before the first unmap.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cosim.h"

static enum result unmap(const struct opts *o, bool ats)
{
	struct ep ep;
	uint32_t ioas, hwpt;
	uint8_t *buf;
	uint64_t pages = o->size / PAGE_SZ, sweep = o->size / o->stride, *unmap_seq;
	struct tg_counters tc, ret;
	struct ep_counters k;
	struct tg_cfg cfg = { .base = IOVA_BASE, .size = o->size, .stride = o->stride,
			      .rate = o->rate, .ats = ats };
	unsigned count = o->count;

	if (pages < 2)
		return fail("--size 0x%llx holds %llu page(s); need at least 2",
			    (unsigned long long)o->size, (unsigned long long)pages);
	if (PAGE_SZ % o->stride)
		return fail("--stride %u must divide the page size %llu: records may not straddle "
			    "pages", o->stride, PAGE_SZ);
	if (count >= pages)
		count = (unsigned)pages - 1;
	unmap_seq = calloc(pages, sizeof(*unmap_seq));
	buf = dma_buf(o->size);
	EXPECT(unmap_seq && buf, "out of memory for 0x%llx bytes", (unsigned long long)o->size);

	TRY("open endpoint", ep_open_vfio(&ep, o->bdf));
	TRY("IOAS", iommufd_ioas_alloc(ep.iommufd, &ioas));
	for (uint64_t p = 0; p < pages; p++)
		TRY("map one page", iommufd_ioas_map(ep.iommufd, ioas, buf + p * PAGE_SZ, PAGE_SZ,
						IOVA_BASE + p * PAGE_SZ));
	TRY("HWPT", iommufd_hwpt_alloc(ep.iommufd, ep.vfio.dev_id, ioas, 0, &hwpt));
	TRY("attach", ep_attach_marked(&ep, hwpt, 0, "set-up: attach"));
	TRY("bus master on", pci_bus_master(&ep.pci, true));
	diag("%llu pages at IOVA 0x%llx, %u to unmap, sweep %llu records, %s",
	     (unsigned long long)pages, (unsigned long long)IOVA_BASE, count,
	     (unsigned long long)sweep, ats ? "ATS" : "untranslated");

	ep_marker(&ep, COSIM_EP_MARKER_TAG_TEST_BEGIN, count, ats ? "unmap ats" : "unmap");
	ep_tg_start(&ep, &cfg);
	TRY("first sweep", ep_tg_wait_seq(&ep, sweep + o->settle, o->timeout_ms, &tc));
	if (tg_failures(&tc)) {
		tg_diag("before any unmap", &tc);
		return fail("failures while everything was mapped");
	}

	for (unsigned i = 0; i < count; i++) {
		uint64_t p = pages - 1 - i, iova = IOVA_BASE + p * PAGE_SZ;
		int rc;

		ep_marker(&ep, COSIM_EP_MARKER_TAG_UNMAP_BEGIN, iova, "unmap page");
		rc = iommufd_ioas_unmap(ep.iommufd, ioas, iova, PAGE_SZ);
		ep_tg_read_ret(&ep, &ret);
		ep_marker(&ep, COSIM_EP_MARKER_TAG_UNMAP_END, iova, "unmap page");
		if (rc)
			return lib_result(rc, "IOMMU_IOAS_UNMAP under traffic");
		unmap_seq[p] = ret.seq;
		ep_wr64(&ep, COSIM_EP_TG_TAG, i + 1);
		/* A full sweep after S: every slot, mapped or not, is written at least once. */
		TRY("sweep after unmap", ep_tg_wait_seq(&ep, ret.seq + sweep + o->settle,
							o->timeout_ms, &tc));
		for (uint64_t q = 0; q < pages; q++) {
			struct tg_scan s;
			bool mapped = q < pages - 1 - i;

			tg_scan(buf + q * PAGE_SZ, PAGE_SZ, IOVA_BASE + q * PAGE_SZ, o->stride, &s);
			if (s.misplaced)
				return fail("unmap %u: page %llu holds %llu records for another IOVA "
					    "(first at offset 0x%llx)", i, (unsigned long long)q,
					    (unsigned long long)s.misplaced,
					    (unsigned long long)s.first_misplaced_off);
			if (!mapped && s.records && s.max_seq >= unmap_seq[q]) {
				tg_diag("counters", &tc);
				return fail("unmap %u: record seq %llu (tag %llu) landed in page %llu "
					    "(IOVA 0x%llx, offset 0x%llx) after its unmap returned "
					    "with TG_SEQ %llu", i, (unsigned long long)s.max_seq,
					    (unsigned long long)s.max_seq_tag, (unsigned long long)q,
					    (unsigned long long)(IOVA_BASE + q * PAGE_SZ),
					    (unsigned long long)s.max_seq_off,
					    (unsigned long long)unmap_seq[q]);
			}
			if (mapped && (!s.records || s.max_seq < ret.seq)) {
				tg_diag("counters", &tc);
				return fail("unmap %u: mapped page %llu got no record with seq >= %llu "
					    "(%llu records, max seq %llu)", i, (unsigned long long)q,
					    (unsigned long long)ret.seq, (unsigned long long)s.records,
					    (unsigned long long)s.max_seq);
			}
		}
		vdiag("unmap %u: IOVA 0x%llx at TG_SEQ %llu; failures %llu -> %llu", i,
		      (unsigned long long)iova, (unsigned long long)ret.seq,
		      (unsigned long long)tg_failures(&ret), (unsigned long long)tg_failures(&tc));
		if (tg_failures(&tc) <= tg_failures(&ret)) {
			tg_diag("counters", &tc);
			return fail("unmap %u: a full sweep over unmapped IOVA 0x%llx counted no "
				    "failure (%llu before, %llu after)", i, (unsigned long long)iova,
				    (unsigned long long)tg_failures(&ret),
				    (unsigned long long)tg_failures(&tc));
		}
	}

	ep_tg_stop(&ep);
	ep_marker(&ep, COSIM_EP_MARKER_TAG_TEST_END, count, NULL);
	ep_tg_read(&ep, &tc);
	ep_counters_read(&ep, &k);
	tg_diag("final", &tc);
	counters_diag("final", &k);
	EXPECT(k.inv_cpl == k.inv_req, "%llu ATS invalidation requests, %llu completions",
	       (unsigned long long)k.inv_req, (unsigned long long)k.inv_cpl);
	return R_PASS;
}

static enum result unmap_ats(const struct opts *o)
{
	return o->ats ? unmap(o, true) : skip("--no-ats");
}

static enum result unmap_untranslated(const struct opts *o)
{
	return unmap(o, false);
}

static const struct tcase cases[] = {
	TCASE(unmap_ats, "unmap pages under ATS traffic: nothing lands after unmap"),
	TCASE(unmap_untranslated, "the same with untranslated traffic"),
};

COSIM_SUITE(cosim_unmap, cases,
	    .summary = "IOMMU_IOAS_UNMAP under traffic: after it returns nothing lands in the "
		       "unmapped range.",
	    .params = "--count (pages to unmap, < size/4096) --settle --timeout-ms --rate "
		      "--stride --size --no-ats --bdf",
	    .defaults = { .count = 8, .settle = 16, .timeout_ms = 20000, .rate = 4,
			  .stride = 256, .pasid = 1, .case_timeout_s = 300, .size = 0x10000,
			  .ats = true });
