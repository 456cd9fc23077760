// SPDX-License-Identifier: MIT
/*
 * Area 3: hitless replace of one iommufd paging domain by another under traffic.
 *
 * Three IOAS map the same IOVA window to different buffers A, B and C; a HWPT is allocated
 * from each. The traffic generator writes sequence-numbered records across the window while
 * the device's RID is replaced A->B->C->A... --count times: with three domains, stale state
 * left from two attaches back can never coincide with the new domain. After each VFIO_DEVICE_ATTACH_IOMMUFD_PT
 * returns, TG_SEQ is read at once (S). Then, once the generator has written --settle more
 * records:
 *  - invariant 1/2: no record with seq >= S is in either other buffer (nothing reached a
 *    detached domain, neither through the SMMU nor through a stale ATC entry);
 *  - traffic flows in the new domain: the new buffer holds a record with seq >= S;
 *  - invariant 3: TG_XLATE_FAIL, TG_ABORTS and TG_ATS_ERR do not move, neither during the
 *    attach call (counters read just before it and right after it returns) nor outside it;
 *    a replace that fails during the call is reported with its counters and the case goes
 *    on to count how many do, then fails;
 *  - every record sits at the slot its iova field names (no translation to a wrong page).
 */
#include <stdio.h>
#include <string.h>

#include "cosim.h"

/* Failing replaces printed in full; later ones only by number (the trace has them all). */
#define MAX_REPORTED 10
#define LIST_BYTES 400

struct stats {
	uint64_t min_ms, max_ms, sum_ms;
	unsigned bad;           /* replaces with failures during the attach call */
	unsigned first_bad, last_bad;
	uint64_t bad_failures;  /* failures counted during those calls */
	char list[LIST_BYTES];  /* "i(+failures) ..." for every failing replace that fits */
	bool list_full;         /* some did not fit */
};

static void delta_diag(const char *what, const struct tg_counters *from,
		       const struct tg_counters *to)
{
	diag("%s: TG_SEQ +%llu TG_WRITES +%llu TG_XLATE_FAIL +%llu TG_ABORTS +%llu "
	     "TG_ATS_ERR +%llu", what, (unsigned long long)(to->seq - from->seq),
	     (unsigned long long)(to->writes - from->writes),
	     (unsigned long long)(to->xlate_fail - from->xlate_fail),
	     (unsigned long long)(to->aborts - from->aborts),
	     (unsigned long long)(to->ats_err - from->ats_err));
}

/* Records in the buffers once the generator has gone --settle records past the return. */
static enum result check_buffers(unsigned i, const char *label, const struct domain *old,
				 const struct domain *new, uint64_t seq_at_return,
				 const struct tg_counters *now, uint32_t stride)
{
	struct tg_scan so, sn;

	tg_scan(old->buf, old->len, old->iova, stride, &so);
	tg_scan(new->buf, new->len, new->iova, stride, &sn);
	vdiag("replace %u %s: TG_SEQ at return %llu, now %llu; old: %llu records max seq %llu; "
	      "new: %llu records max seq %llu", i, label, (unsigned long long)seq_at_return,
	      (unsigned long long)now->seq, (unsigned long long)so.records,
	      (unsigned long long)so.max_seq, (unsigned long long)sn.records,
	      (unsigned long long)sn.max_seq);
	if (so.records && so.max_seq >= seq_at_return) {
		tg_diag("counters", now);
		return fail("replace %u (%s): record seq %llu (tag %llu) landed in the OLD buffer "
			    "at offset 0x%llx (IOVA 0x%llx) after the attach returned with TG_SEQ "
			    "%llu", i, label, (unsigned long long)so.max_seq,
			    (unsigned long long)so.max_seq_tag, (unsigned long long)so.max_seq_off,
			    (unsigned long long)(old->iova + so.max_seq_off),
			    (unsigned long long)seq_at_return);
	}
	if (!sn.records || sn.max_seq < seq_at_return) {
		tg_diag("counters", now);
		return fail("replace %u (%s): no record with seq >= %llu reached the NEW buffer "
			    "(%llu records, max seq %llu) though TG_SEQ is %llu", i, label,
			    (unsigned long long)seq_at_return, (unsigned long long)sn.records,
			    (unsigned long long)sn.max_seq, (unsigned long long)now->seq);
	}
	if (so.misplaced || sn.misplaced)
		return fail("replace %u (%s): records at the wrong slot: old %llu (first at 0x%llx), "
			    "new %llu (first at 0x%llx)", i, label,
			    (unsigned long long)so.misplaced,
			    (unsigned long long)so.first_misplaced_off,
			    (unsigned long long)sn.misplaced,
			    (unsigned long long)sn.first_misplaced_off);
	return R_PASS;
}

/*
 * Failures outside an attach call (a domain was stably attached) stop the case at once.
 * Failures during the call break invariant 3; they are recorded per replace (which one, the
 * counters before and at return, the deltas) and the case goes on so that the report says
 * how often it happens, then fails at the end.
 */
static enum result check_failures(unsigned i, const char *label, const struct tg_counters *prev,
				  const struct tg_counters *before, const struct tg_counters *ret,
				  const struct tg_counters *now, uint64_t ms, struct stats *st)
{
	if (tg_failures(before) != tg_failures(prev)) {
		delta_diag("stable domain, from the previous check to this attach", prev, before);
		return fail("replace %u (%s): %llu failures before the attach started, while the "
			    "previous domain was attached", i, label,
			    (unsigned long long)(tg_failures(before) - tg_failures(prev)));
	}
	if (tg_failures(now) != tg_failures(ret)) {
		tg_diag("attach returned", ret);
		tg_diag("records checked", now);
		delta_diag("after the attach returned", ret, now);
		return fail("replace %u (%s): %llu failures after the attach returned, in the new "
			    "domain", i, label, (unsigned long long)(tg_failures(now) -
								 tg_failures(ret)));
	}
	if (tg_failures(ret) == tg_failures(before))
		return R_PASS;
	if (!st->bad++)
		st->first_bad = i;
	st->last_bad = i;
	st->bad_failures += tg_failures(ret) - tg_failures(before);
	{
		char item[48];
		size_t n = strlen(st->list);
		int len = snprintf(item, sizeof(item), "%s%u(+%llu)", n ? " " : "", i,
				   (unsigned long long)(tg_failures(ret) - tg_failures(before)));

		if (n + (size_t)len < sizeof(st->list))
			memcpy(st->list + n, item, (size_t)len + 1);
		else
			st->list_full = true;
	}
	if (st->bad <= MAX_REPORTED) {
		diag("replace %u (%s): %llu failures DURING the attach call (%llu ms), the "
		     "domain mapping the whole window before and after", i, label,
		     (unsigned long long)(tg_failures(ret) - tg_failures(before)),
		     (unsigned long long)ms);
		tg_diag("  before the attach", before);
		tg_diag("  attach returned", ret);
		delta_diag("  during the attach call", before, ret);
	} else if (st->bad == MAX_REPORTED + 1) {
		diag("(further failing replaces are listed at the end)");
	}
	return R_PASS;
}

static enum result replace(const struct opts *o, bool ats)
{
	static const char *const name[3] = { "A", "B", "C" };
	struct ep ep;
	struct domain dom[3];
	struct tg_counters tc, prev, before, ret;
	struct ep_counters k0, k1;
	struct stats st = { .min_ms = UINT64_MAX };
	struct tg_cfg cfg = { .base = IOVA_BASE, .size = o->size, .stride = o->stride,
			      .rate = o->rate, .ats = ats };
	unsigned cur = 0;
	enum result res;

	TRY("open endpoint", ep_open_vfio(&ep, o->bdf));
	TRY("domain A", ep_domain(&ep, &dom[0], IOVA_BASE, o->size, 0));
	TRY("domain B", ep_domain(&ep, &dom[1], IOVA_BASE, o->size, 0));
	TRY("domain C", ep_domain(&ep, &dom[2], IOVA_BASE, o->size, 0));
	TRY("attach A", ep_attach_marked(&ep, dom[0].hwpt, 0, "set-up: attach A"));
	TRY("bus master on", pci_bus_master(&ep.pci, true));
	diag("HWPT A %u (IOAS %u), HWPT B %u (IOAS %u), HWPT C %u (IOAS %u), window IOVA "
	     "0x%llx + 0x%llx, stride %u, rate %u, %s, %u replaces", dom[0].hwpt, dom[0].ioas,
	     dom[1].hwpt, dom[1].ioas, dom[2].hwpt, dom[2].ioas,
	     (unsigned long long)IOVA_BASE, (unsigned long long)o->size, o->stride, o->rate,
	     ats ? "ATS" : "untranslated", o->count);

	ep_marker(&ep, COSIM_EP_MARKER_TAG_TEST_BEGIN, o->count, ats ? "replace ats" : "replace");
	ep_tg_start(&ep, &cfg);
	TRY("generator warm-up in A", ep_tg_wait_seq(&ep, o->settle, o->timeout_ms, &tc));
	if (tg_failures(&tc)) {
		tg_diag("warm-up", &tc);
		return fail("failures with A attached before any replace");
	}
	if ((res = check_buffers(0, "start in A", &dom[1], &dom[0], 0, &tc, o->stride)) != R_PASS ||
	    (res = check_buffers(0, "start in A", &dom[2], &dom[0], 0, &tc, o->stride)) != R_PASS)
		return res;
	ep_counters_read(&ep, &k0);
	prev = tc;

	for (unsigned i = 1; i <= o->count; i++) {
		unsigned nxt = (cur + 1) % 3, other = (cur + 2) % 3;
		char label[16];
		uint64_t t0, dt;
		int rc;

		snprintf(label, sizeof(label), "%s->%s", name[cur], name[nxt]);
		/* The attach call's window: counters just before it starts ... */
		ep_tg_read(&ep, &before);
		ep_marker(&ep, COSIM_EP_MARKER_TAG_ATTACH_BEGIN, i, label);
		t0 = now_ms();
		rc = ep_attach(&ep, dom[nxt].hwpt);
		dt = now_ms() - t0;
		/* ... and the reference point: everything the generator issues from here on
		 * must go through the new domain. */
		ep_tg_read_ret(&ep, &ret);
		ep_marker(&ep, COSIM_EP_MARKER_TAG_ATTACH_END, i, label);
		if (rc) {
			diag("replace %u (%s) failed", i, label);
			return lib_result(rc, "VFIO_DEVICE_ATTACH_IOMMUFD_PT (replace)");
		}
		ep_wr64(&ep, COSIM_EP_TG_TAG, i);
		st.sum_ms += dt;
		st.min_ms = dt < st.min_ms ? dt : st.min_ms;
		st.max_ms = dt > st.max_ms ? dt : st.max_ms;
		TRY("generator progress after replace",
		    ep_tg_wait_seq(&ep, ret.seq + o->settle, o->timeout_ms, &tc));
		/* Both detached domains: the one just left and the one two attaches back. */
		if ((res = check_buffers(i, label, &dom[cur], &dom[nxt], ret.seq, &tc,
					 o->stride)) != R_PASS ||
		    (res = check_buffers(i, label, &dom[other], &dom[nxt], ret.seq, &tc,
					 o->stride)) != R_PASS)
			return res;
		if ((res = check_failures(i, label, &prev, &before, &ret, &tc, dt, &st)) != R_PASS)
			return res;
		prev = tc;
		cur = nxt;
	}

	ep_tg_stop(&ep);
	ep_marker(&ep, COSIM_EP_MARKER_TAG_TEST_END, o->count, NULL);
	ep_tg_read(&ep, &tc);
	ep_counters_read(&ep, &k1);
	tg_diag("final", &tc);
	counters_diag("final", &k1);
	if (o->count)
		diag("%u replaces, attach ioctl ms min %llu avg %llu max %llu; ATC invalidations "
		     "during the loop %llu requested, %llu completed", o->count,
		     (unsigned long long)st.min_ms, (unsigned long long)(st.sum_ms / o->count),
		     (unsigned long long)st.max_ms,
		     (unsigned long long)(k1.inv_req - k0.inv_req),
		     (unsigned long long)(k1.inv_cpl - k0.inv_cpl));
	if (st.bad)
		diag("replaces with failures during the attach call (+failures): %s%s", st.list,
		     st.list_full ? " ..." : "");
	EXPECT(!st.bad, "%u of %u replaces saw translation failures or aborts DURING the attach "
	       "call (%llu in all; first replace %u, last %u): the device saw neither the old "
	       "nor the new domain, though both map the whole window", st.bad, o->count,
	       (unsigned long long)st.bad_failures, st.first_bad, st.last_bad);
	EXPECT(tg_failures(&tc) == tg_failures(&prev), "%llu failures between the last check "
	       "and the generator's stop (one domain stably attached)",
	       (unsigned long long)(tg_failures(&tc) - tg_failures(&prev)));
	EXPECT(k1.inv_cpl == k1.inv_req, "the endpoint received %llu ATS invalidation requests "
	       "but returned %llu completions", (unsigned long long)k1.inv_req,
	       (unsigned long long)k1.inv_cpl);
	if (ats)
		EXPECT(k1.ats_req > 0, "the generator ran with ATS but CNT_ATS_REQ is 0");
	return R_PASS;
}

static enum result replace_ats(const struct opts *o)
{
	return o->ats ? replace(o, true) : skip("--no-ats");
}

static enum result replace_untranslated(const struct opts *o)
{
	return replace(o, false);
}

static const struct tcase cases[] = {
	TCASE(replace_ats,
	      "replace A->B->C --count times under ATS traffic: nothing reaches a detached domain"),
	TCASE(replace_untranslated,
	      "the same with untranslated traffic"),
};

COSIM_SUITE(cosim_replace, cases,
	    .summary = "Hitless paging->paging replace (VFIO_DEVICE_ATTACH_IOMMUFD_PT) under "
		       "traffic-generator load.",
	    .params = "--count --settle --timeout-ms --rate --stride --size --no-ats --bdf",
	    .defaults = { .count = 200, .settle = 16, .timeout_ms = 10000, .rate = 4,
			  .stride = 64, .pasid = 1, .case_timeout_s = 600, .size = 0x10000,
			  .ats = true });
