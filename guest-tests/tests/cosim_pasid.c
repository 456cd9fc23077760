// SPDX-License-Identifier: MIT
/*
 * Area 6: a PASID-tagged DMA stream while the RID's domain is replaced, and while the
 * PASID's own domain is (pasid_self_replace_*, below).
 *
 * Three IOAS map the same IOVA window to buffers P, A and B. PASID --pasid is attached to a
 * HWPT over P; the RID is attached to A and then replaced A<->B --count times while the
 * generator writes PASID-tagged records (TG_CTRL.PASID). The driver rewrites the RID's STE/CD
 * around the PASID's context descriptor, which must keep working throughout:
 *  - no translation failure or abort is ever counted (invariant 3 for the PASID stream);
 *  - after each replace, P receives records with seq >= TG_SEQ at the attach's return;
 *  - A and B never receive a record (PASID traffic never used the RID's domain).
 * pasid_dma first checks the routing with one DMA copy: PASID-tagged DMA moves P's data and
 * leaves A untouched.
 */
#include <stdio.h>
#include <string.h>

#include "cosim.h"

struct pctx {
	struct ep ep;
	struct domain p, a, b;
};

static enum result setup(struct pctx *c, const struct opts *o)
{
	uint32_t flags = vfio_hwpt_pasid_flag();
	bool on;
	int rc;

	if (!vfio_pasid_uapi())
		return unsupported("PASID attach through VFIO/iommufd (this uapi has no "
				   "VFIO_DEVICE_ATTACH_PASID)");
	EXPECT(o->pasid != 0, "--pasid 0 is the RID's own address space; use 1 or more");
	TRY("open endpoint", ep_open_vfio(&c->ep, o->bdf));
	TRY("read PASID Control", pci_pasid_enabled(&c->ep.pci, &on));
	EXPECT(on, "PASID Control.Enable is clear: the SMMU driver did not enable PASID");
	EXPECT(ep_rd32(&c->ep, COSIM_EP_CAPS) & COSIM_EP_CAPS_PASID, "endpoint CAPS 0x%x lacks "
	       "PASID", ep_rd32(&c->ep, COSIM_EP_CAPS));
	TRY("domain P (PASID)", ep_domain(&c->ep, &c->p, IOVA_BASE, o->size, flags));
	TRY("domain A (RID)", ep_domain(&c->ep, &c->a, IOVA_BASE, o->size, flags));
	TRY("domain B (RID)", ep_domain(&c->ep, &c->b, IOVA_BASE, o->size, flags));
	TRY("attach RID to A", ep_attach_marked(&c->ep, c->a.hwpt, 0, "set-up: RID->A"));
	ep_marker(&c->ep, COSIM_EP_MARKER_TAG_PASID_ATTACH_BEGIN, o->pasid, "pasid->P");
	rc = ep_attach_pasid(&c->ep, o->pasid, c->p.hwpt);
	ep_marker(&c->ep, COSIM_EP_MARKER_TAG_PASID_ATTACH_END, o->pasid, "pasid->P");
	TRY("attach PASID to P", rc);
	TRY("bus master on", pci_bus_master(&c->ep.pci, true));
	diag("PASID %u -> HWPT %u (P); RID HWPTs A %u, B %u; window IOVA 0x%llx + 0x%llx",
	     o->pasid, c->p.hwpt, c->a.hwpt, c->b.hwpt, (unsigned long long)IOVA_BASE,
	     (unsigned long long)o->size);
	return R_PASS;
}

static enum result pasid_dma(const struct opts *o)
{
	struct pctx c;
	struct dma_desc d;
	struct dma_res r;
	uint8_t *p, *a;
	uint64_t half = o->size / 2;
	enum result res;

	if ((res = setup(&c, o)) != R_PASS)
		return res;
	p = c.p.buf;
	a = c.a.buf;
	for (uint64_t i = 0; i < half; i++) {
		p[i] = (uint8_t)(i * 7 + 1);
		a[i] = (uint8_t)(i * 13 + 5);
	}
	d = (struct dma_desc){ .op = COSIM_EP_DMA_OP_COPY, .flags = COSIM_EP_DMA_FLAG_PASID |
			       (o->ats ? COSIM_EP_DMA_FLAG_ATS : 0), .pasid = o->pasid,
			       .src = IOVA_BASE, .dst = IOVA_BASE + half, .len = half };
	TRY("PASID DMA copy", ep_dma(&c.ep, &d, &r));
	EXPECT(!(r.status & COSIM_EP_DMA_STATUS_ERROR), "PASID %u copy: DMA_STATUS 0x%08x code "
	       "%u (%s) DMA_RESULT 0x%llx", o->pasid, r.status, dma_err_code(r.status),
	       dma_err_name(dma_err_code(r.status)), (unsigned long long)r.result);
	for (uint64_t i = 0; i < half; i++) {
		EXPECT(p[half + i] == p[i], "P[0x%llx] = 0x%02x, expected the copy of P[0x%llx] "
		       "0x%02x%s", (unsigned long long)(half + i), p[half + i],
		       (unsigned long long)i, p[i],
		       p[half + i] == a[i] ? " (it holds A's data: the RID's domain was used)" : "");
		EXPECT(a[half + i] == 0, "A[0x%llx] = 0x%02x: PASID DMA wrote the RID's domain",
		       (unsigned long long)(half + i), a[half + i]);
	}
	return R_PASS;
}

static enum result check_buffers(struct pctx *c, const struct opts *o, unsigned i,
				 const char *label, uint64_t seq, const struct tg_counters *tc)
{
	struct tg_scan sp, sa, sb;

	tg_scan(c->p.buf, c->p.len, c->p.iova, o->stride, &sp);
	tg_scan(c->a.buf, c->a.len, c->a.iova, o->stride, &sa);
	tg_scan(c->b.buf, c->b.len, c->b.iova, o->stride, &sb);
	vdiag("%u %s: TG_SEQ at return %llu, P %llu records max seq %llu, A %llu, B %llu", i,
	      label, (unsigned long long)seq, (unsigned long long)sp.records,
	      (unsigned long long)sp.max_seq, (unsigned long long)sa.records,
	      (unsigned long long)sb.records);
	if (tg_failures(tc)) {
		tg_diag("counters", tc);
		return fail("%u %s: the PASID stream saw translation failures or aborts", i, label);
	}
	if (sa.records || sb.records)
		return fail("%u %s: PASID records reached the RID's domains: A holds %llu (max seq "
			    "%llu), B holds %llu (max seq %llu)", i, label,
			    (unsigned long long)sa.records, (unsigned long long)sa.max_seq,
			    (unsigned long long)sb.records, (unsigned long long)sb.max_seq);
	if (!sp.records || sp.max_seq < seq) {
		tg_diag("counters", tc);
		return fail("%u %s: no record with seq >= %llu in P (%llu records, max seq %llu)",
			    i, label, (unsigned long long)seq, (unsigned long long)sp.records,
			    (unsigned long long)sp.max_seq);
	}
	if (sp.misplaced)
		return fail("%u %s: %llu records at the wrong slot of P (first at 0x%llx)", i,
			    label, (unsigned long long)sp.misplaced,
			    (unsigned long long)sp.first_misplaced_off);
	return R_PASS;
}

/* The end of a PASID stream case: the generator stopped, the final counters (ATS really
 * used when asked for), and the PASID detached under markers. */
static enum result stream_done(struct pctx *c, const struct opts *o, bool ats)
{
	struct tg_counters tc;
	struct ep_counters k;
	int rc;

	ep_tg_stop(&c->ep);
	ep_marker(&c->ep, COSIM_EP_MARKER_TAG_TEST_END, o->count, NULL);
	ep_tg_read(&c->ep, &tc);
	ep_counters_read(&c->ep, &k);
	tg_diag("final", &tc);
	counters_diag("final", &k);
	if (ats)
		EXPECT(k.ats_req > 0, "PASID stream with ATS but CNT_ATS_REQ is 0");
	ep_marker(&c->ep, COSIM_EP_MARKER_TAG_PASID_ATTACH_BEGIN, o->pasid, "pasid detach");
	rc = ep_detach_pasid(&c->ep, o->pasid);
	ep_marker(&c->ep, COSIM_EP_MARKER_TAG_PASID_ATTACH_END, o->pasid, "pasid detach");
	TRY("detach PASID", rc);
	return R_PASS;
}

static enum result pasid_replace(const struct opts *o, bool ats)
{
	struct pctx c;
	struct tg_counters tc, ret;
	struct tg_cfg cfg = { .base = IOVA_BASE, .size = o->size, .stride = o->stride,
			      .rate = o->rate, .ats = ats, .use_pasid = true, .pasid = o->pasid };
	const struct domain *rid[2];
	unsigned cur = 0;
	enum result res;
	int rc;

	if ((res = setup(&c, o)) != R_PASS)
		return res;
	rid[0] = &c.a;
	rid[1] = &c.b;
	ep_marker(&c.ep, COSIM_EP_MARKER_TAG_TEST_BEGIN, o->count,
		  ats ? "pasid stream ats" : "pasid stream");
	ep_tg_start(&c.ep, &cfg);
	TRY("generator warm-up", ep_tg_wait_seq(&c.ep, o->settle, o->timeout_ms, &tc));
	if ((res = check_buffers(&c, o, 0, "start", 0, &tc)) != R_PASS)
		return res;

	for (unsigned i = 1; i <= o->count; i++) {
		unsigned nxt = cur ^ 1;
		const char *label = nxt ? "RID A->B" : "RID B->A";

		ep_marker(&c.ep, COSIM_EP_MARKER_TAG_ATTACH_BEGIN, i, label);
		rc = ep_attach(&c.ep, rid[nxt]->hwpt);
		ep_tg_read_ret(&c.ep, &ret);
		ep_marker(&c.ep, COSIM_EP_MARKER_TAG_ATTACH_END, i, label);
		if (rc)
			return lib_result(rc, "replace the RID's HWPT with a PASID attached");
		ep_wr64(&c.ep, COSIM_EP_TG_TAG, i);
		TRY("generator progress", ep_tg_wait_seq(&c.ep, ret.seq + o->settle, o->timeout_ms,
							 &tc));
		if ((res = check_buffers(&c, o, i, label, ret.seq, &tc)) != R_PASS)
			return res;
		cur = nxt;
	}
	return stream_done(&c, o, ats);
}

static enum result pasid_replace_ats(const struct opts *o)
{
	return o->ats ? pasid_replace(o, true) : skip("--no-ats");
}

static enum result pasid_replace_untranslated(const struct opts *o)
{
	return pasid_replace(o, false);
}

/*
 * The PASID's own domain replaced under its own traffic: a second VFIO_DEVICE_ATTACH_PASID
 * replaces the PASID's HWPT (P <-> Q, both mapping the window to buffers of their own),
 * --count times each way, while the generator writes through that PASID. After each return
 * the new domain receives the records (seq >= TG_SEQ at the return), the old one none of them
 * (invariant 1 for the PASID), nothing fails, and the RID's domain never sees PASID traffic.
 * Failures inside the replace calls are reported, not judged: the trace analysis says which
 * of them break invariant 3.
 */
static enum result pasid_self_replace(const struct opts *o, bool ats)
{
	struct pctx c;
	struct domain q;
	struct tg_counters before, ret, tc;
	struct tg_cfg cfg = { .base = IOVA_BASE, .size = o->size, .stride = o->stride,
			      .rate = o->rate, .ats = ats, .use_pasid = true, .pasid = o->pasid };
	const struct domain *pd[2];
	uint64_t during = 0, during_calls = 0;
	unsigned cur = 0;
	enum result res;
	int rc;

	if ((res = setup(&c, o)) != R_PASS)
		return res;
	TRY("domain Q (PASID)", ep_domain(&c.ep, &q, IOVA_BASE, o->size,
					  vfio_hwpt_pasid_flag()));
	pd[0] = &c.p;
	pd[1] = &q;
	ep_marker(&c.ep, COSIM_EP_MARKER_TAG_TEST_BEGIN, o->count,
		  ats ? "pasid self replace ats" : "pasid self replace");
	ep_tg_start(&c.ep, &cfg);
	TRY("generator warm-up", ep_tg_wait_seq(&c.ep, o->settle, o->timeout_ms, &tc));
	if (tg_failures(&tc)) {
		tg_diag("warm-up", &tc);
		return fail("the PASID stream failed before any replace");
	}
	for (unsigned i = 1; i <= 2 * o->count; i++) {
		unsigned nxt = cur ^ 1;
		const char *label = nxt ? "PASID P->Q" : "PASID Q->P";
		struct tg_scan sn, so, sa, sb;

		ep_wr64(&c.ep, COSIM_EP_TG_TAG, i);
		ep_tg_read(&c.ep, &before);
		ep_marker(&c.ep, COSIM_EP_MARKER_TAG_PASID_ATTACH_BEGIN, o->pasid, label);
		rc = ep_attach_pasid(&c.ep, o->pasid, pd[nxt]->hwpt);
		ep_tg_read_ret(&c.ep, &ret);
		ep_marker(&c.ep, COSIM_EP_MARKER_TAG_PASID_ATTACH_END, o->pasid, label);
		if (rc)
			return lib_result(rc, "replace the PASID's HWPT under its traffic");
		if (tg_failures(&ret) > tg_failures(&before)) {
			during += tg_failures(&ret) - tg_failures(&before);
			during_calls++;
		}
		TRY("generator progress", ep_tg_wait_seq(&c.ep, ret.seq + o->settle, o->timeout_ms,
							 &tc));
		if (tg_failures(&tc) > tg_failures(&ret)) {
			tg_diag("counters", &tc);
			return fail("%u %s: the PASID stream failed after the replace returned", i,
				    label);
		}
		tg_scan(pd[nxt]->buf, pd[nxt]->len, pd[nxt]->iova, o->stride, &sn);
		tg_scan(pd[cur]->buf, pd[cur]->len, pd[cur]->iova, o->stride, &so);
		tg_scan(c.a.buf, c.a.len, c.a.iova, o->stride, &sa);
		tg_scan(c.b.buf, c.b.len, c.b.iova, o->stride, &sb);
		EXPECT(sn.records && sn.max_seq >= ret.seq, "%u %s: the new domain got no record "
		       "numbered >= %llu (%llu records, max seq %llu)", i, label,
		       (unsigned long long)ret.seq, (unsigned long long)sn.records,
		       (unsigned long long)sn.max_seq);
		EXPECT(!so.records || so.max_seq < ret.seq, "%u %s: record seq %llu (tag %llu) "
		       "landed in the old domain after the replace returned with TG_SEQ %llu", i,
		       label, (unsigned long long)so.max_seq, (unsigned long long)so.max_seq_tag,
		       (unsigned long long)ret.seq);
		EXPECT(!sa.records && !sb.records, "%u %s: PASID records reached the RID's domains "
		       "(A %llu, B %llu)", i, label, (unsigned long long)sa.records,
		       (unsigned long long)sb.records);
		EXPECT(!sn.misplaced, "%u %s: %llu records at the wrong slot", i, label,
		       (unsigned long long)sn.misplaced);
		cur = nxt;
	}
	diag("%u of %u PASID replaces saw %llu translation failures or aborts DURING the call "
	     "(for the trace analysis to judge)", (unsigned)during_calls, 2 * o->count,
	     (unsigned long long)during);
	return stream_done(&c, o, ats);
}

static enum result pasid_self_replace_ats(const struct opts *o)
{
	return o->ats ? pasid_self_replace(o, true) : skip("--no-ats");
}

static enum result pasid_self_replace_untranslated(const struct opts *o)
{
	return pasid_self_replace(o, false);
}

static const struct tcase cases[] = {
	TCASE(pasid_dma, "PASID-tagged DMA copy uses the PASID's domain, not the RID's"),
	TCASE(pasid_replace_ats,
	      "PASID ATS stream fault-free while the RID's domain is replaced --count times"),
	TCASE(pasid_replace_untranslated,
	      "the same with an untranslated PASID stream"),
	TCASE(pasid_self_replace_ats,
	      "the PASID's own domain replaced 2 x --count times under its ATS traffic"),
	TCASE(pasid_self_replace_untranslated,
	      "the same with untranslated PASID traffic"),
};

COSIM_SUITE(cosim_pasid, cases,
	    .summary = "PASID attach (VFIO_DEVICE_ATTACH_PASID) and a PASID stream across RID "
		       "domain replaces.",
	    .params = "--count --pasid --settle --timeout-ms --rate --stride --size --no-ats "
		      "--bdf",
	    .defaults = { .count = 100, .settle = 16, .timeout_ms = 10000, .rate = 4,
			  .stride = 64, .pasid = 1, .case_timeout_s = 600, .size = 0x10000,
			  .ats = true });
