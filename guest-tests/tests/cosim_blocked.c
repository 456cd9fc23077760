// SPDX-License-Identifier: MIT
/*
 * Area 4: switches between a paging domain and the blocked / identity domains under traffic.
 *
 * blocked_*: iommufd paging HWPT <-> blocked (VFIO_DEVICE_DETACH_IOMMUFD_PT puts the device
 *   in the blocked domain; attaching again brings the paging domain back). After the detach
 *   returns nothing lands in the buffer and the generator counts failures (aborts happen);
 *   after the attach returns records land again and no failure is counted (aborts only while
 *   blocked).
 * identity_sysfs: iommufd has no identity HWPT, so this uses the kernel's other path with no
 *   driver bound: /sys/kernel/iommu_groups/N/type "identity" <-> "DMA" (the default paging
 *   domain). The generator targets the physical address of one page: under identity records
 *   land there and nothing fails; after the switch to the DMA domain (where that address is
 *   not mapped) nothing lands and failures are counted.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cosim.h"

#define PAGEMAP_PRESENT (1ULL << 63)
#define PAGEMAP_PFN_MASK ((1ULL << 55) - 1)

/*
 * Read the counters just before the switch starts (the end of the previous state's window)
 * and right after it returns (the point from which the new state must hold). What happens
 * between the two is the switch itself, where either state's behaviour is allowed.
 */
typedef int (*switch_fn)(void *arg);

static int do_switch(struct ep *ep, unsigned i, const char *label, switch_fn fn, void *arg,
		     struct tg_counters *before, struct tg_counters *ret)
{
	int rc;

	ep_tg_read(ep, before);
	ep_marker(ep, COSIM_EP_MARKER_TAG_ATTACH_BEGIN, i, label);
	rc = fn(arg);
	ep_tg_read_ret(ep, ret);
	ep_marker(ep, COSIM_EP_MARKER_TAG_ATTACH_END, i, label);
	return rc;
}

/* Failures counted in a state's window must be none (a state where DMA must land). */
static enum result no_failures_in(unsigned i, const char *state, const char *from_what,
				  const struct tg_counters *from, const char *to_what,
				  const struct tg_counters *to)
{
	if (tg_failures(to) == tg_failures(from))
		return R_PASS;
	tg_diag(from_what, from);
	tg_diag(to_what, to);
	return fail("%u: %llu failures while %s (between '%s' and '%s': %llu -> %llu; "
		    "TG_XLATE_FAIL +%llu TG_ABORTS +%llu TG_ATS_ERR +%llu)", i,
		    (unsigned long long)(tg_failures(to) - tg_failures(from)), state, from_what,
		    to_what, (unsigned long long)tg_failures(from),
		    (unsigned long long)tg_failures(to),
		    (unsigned long long)(to->xlate_fail - from->xlate_fail),
		    (unsigned long long)(to->aborts - from->aborts),
		    (unsigned long long)(to->ats_err - from->ats_err));
}

/*
 * Let the generator issue o->settle more records after a switch returned, then scan buf:
 * the common first half of expect_refused() and expect_landing().
 */
static int settle_and_scan(struct ep *ep, const struct opts *o, unsigned i, const char *label,
			   const void *buf, uint64_t len, uint64_t iova,
			   const struct tg_counters *ret, struct tg_counters *tc, struct tg_scan *s)
{
	int rc = ep_tg_wait_seq(ep, ret->seq + o->settle, o->timeout_ms, tc);

	if (rc != EP_OK)
		return rc;
	tg_scan(buf, len, iova, o->stride, s);
	vdiag("%u %s: TG_SEQ at return %llu; %llu records, max seq %llu; failures %llu -> %llu",
	      i, label, (unsigned long long)ret->seq, (unsigned long long)s->records,
	      (unsigned long long)s->max_seq, (unsigned long long)tg_failures(ret),
	      (unsigned long long)tg_failures(tc));
	return 0;
}

/* After a switch into a state where DMA must not land in buf. */
static enum result expect_refused(struct ep *ep, const struct opts *o, unsigned i,
				  const char *label, const void *buf, uint64_t len, uint64_t iova,
				  const struct tg_counters *ret)
{
	struct tg_counters tc;
	struct tg_scan s;

	TRY("generator progress", settle_and_scan(ep, o, i, label, buf, len, iova, ret, &tc, &s));
	if (s.records && s.max_seq >= ret->seq) {
		tg_diag("counters", &tc);
		return fail("%u %s: record seq %llu (tag %llu) landed at offset 0x%llx after the "
			    "switch returned with TG_SEQ %llu", i, label,
			    (unsigned long long)s.max_seq, (unsigned long long)s.max_seq_tag,
			    (unsigned long long)s.max_seq_off, (unsigned long long)ret->seq);
	}
	if (tg_failures(&tc) <= tg_failures(ret)) {
		tg_diag("counters", &tc);
		return fail("%u %s: %u records issued after the switch but no failure counted "
			    "(%llu -> %llu): the writes went somewhere", i, label, o->settle,
			    (unsigned long long)tg_failures(ret),
			    (unsigned long long)tg_failures(&tc));
	}
	return R_PASS;
}

/* After a switch into a state where DMA must land in buf without any failure. */
static enum result expect_landing(struct ep *ep, const struct opts *o, unsigned i,
				  const char *label, const void *buf, uint64_t len, uint64_t iova,
				  const struct tg_counters *ret)
{
	struct tg_counters tc;
	struct tg_scan s;

	TRY("generator progress", settle_and_scan(ep, o, i, label, buf, len, iova, ret, &tc, &s));
	if (tg_failures(&tc) != tg_failures(ret)) {
		diag("%u %s: DMA must land from the switch's return on", i, label);
		return no_failures_in(i, "DMA had to land", "switch returned", ret,
				      "records checked", &tc);
	}
	if (!s.records || s.max_seq < ret->seq) {
		tg_diag("counters", &tc);
		return fail("%u %s: no record with seq >= %llu landed (%llu records, max seq "
			    "%llu)", i, label, (unsigned long long)ret->seq,
			    (unsigned long long)s.records, (unsigned long long)s.max_seq);
	}
	if (s.misplaced)
		return fail("%u %s: %llu records at the wrong slot (first at offset 0x%llx)", i,
			    label, (unsigned long long)s.misplaced,
			    (unsigned long long)s.first_misplaced_off);
	return R_PASS;
}

/* ------------------------------------------------------------------------------------- */
/* paging <-> blocked through iommufd */

struct attach_arg {
	struct ep *ep;
	uint32_t hwpt;
};

static int sw_detach(void *a)
{
	return ep_detach(((struct attach_arg *)a)->ep);
}

static int sw_attach(void *a)
{
	struct attach_arg *x = a;

	return ep_attach(x->ep, x->hwpt);
}

static enum result blocked(const struct opts *o, bool ats)
{
	struct ep ep;
	struct domain dom;
	struct tg_counters tc, before, ret, paging_ret;
	struct tg_cfg cfg = { .base = IOVA_BASE, .size = o->size, .stride = o->stride,
			      .rate = o->rate, .ats = ats };
	struct attach_arg arg = { .ep = &ep };
	enum result res;

	TRY("open endpoint", ep_open_vfio(&ep, o->bdf));
	TRY("paging domain", ep_domain(&ep, &dom, IOVA_BASE, o->size, 0));
	arg.hwpt = dom.hwpt;
	TRY("attach paging", ep_attach_marked(&ep, dom.hwpt, 0, "set-up: attach paging"));
	TRY("bus master on", pci_bus_master(&ep.pci, true));
	ep_marker(&ep, COSIM_EP_MARKER_TAG_TEST_BEGIN, o->count,
		  ats ? "paging-blocked ats" : "paging-blocked");
	ep_tg_start(&ep, &cfg);
	ep_tg_read_ret(&ep, &paging_ret);
	if ((res = expect_landing(&ep, o, 0, "start paging", dom.buf, dom.len, dom.iova,
				  &paging_ret)) != R_PASS)
		return res;

	for (unsigned i = 1; i <= o->count; i++) {
		int rc;

		rc = do_switch(&ep, i, "paging->blocked", sw_detach, &arg, &before, &ret);
		if (rc)
			return lib_result(rc, "VFIO_DEVICE_DETACH_IOMMUFD_PT (to blocked)");
		/* From the attach's return to the start of this detach the domain was paging;
		 * failures inside the detach call itself are the switch and allowed. */
		if ((res = no_failures_in(i, "paging was attached", "paging attach returned",
					  &paging_ret, "detach starting", &before)) != R_PASS)
			return res;
		vdiag("%u: failures during the detach call %llu -> %llu", i,
		      (unsigned long long)tg_failures(&before), (unsigned long long)tg_failures(&ret));
		if ((res = expect_refused(&ep, o, i, "paging->blocked", dom.buf, dom.len, dom.iova,
					  &ret)) != R_PASS)
			return res;
		rc = do_switch(&ep, i, "blocked->paging", sw_attach, &arg, &before, &paging_ret);
		if (rc)
			return lib_result(rc, "VFIO_DEVICE_ATTACH_IOMMUFD_PT (from blocked)");
		ep_wr64(&ep, COSIM_EP_TG_TAG, i);
		if ((res = expect_landing(&ep, o, i, "blocked->paging", dom.buf, dom.len, dom.iova,
					  &paging_ret)) != R_PASS)
			return res;
	}
	ep_tg_stop(&ep);
	ep_marker(&ep, COSIM_EP_MARKER_TAG_TEST_END, o->count, NULL);
	ep_tg_read(&ep, &tc);
	tg_diag("final", &tc);
	return R_PASS;
}

static enum result blocked_untranslated(const struct opts *o)
{
	return blocked(o, false);
}

static enum result blocked_ats(const struct opts *o)
{
	return o->ats ? blocked(o, true) : skip("--no-ats");
}

/* ------------------------------------------------------------------------------------- */
/* identity <-> DMA through the group's sysfs type */

struct type_arg {
	char path[128];
	const char *type;
};

static int sw_type(void *a)
{
	struct type_arg *x = a;

	return sysfs_write(x->path, x->type);
}

static int phys_addr(void *va, uint64_t *pa)
{
	uint64_t entry;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	off_t off = (off_t)((uintptr_t)va / PAGE_SZ * sizeof(entry));

	if (fd < 0)
		return ep_set_err(errno == ENOENT ? EP_UNSUP : EP_ERR, "/proc/self/pagemap: %s "
				  "(CONFIG_PROC_PAGE_MONITOR)", strerror(errno));
	if (pread(fd, &entry, sizeof(entry), off) != sizeof(entry)) {
		close(fd);
		return ep_set_err(EP_ERR, "pagemap read at 0x%llx: %s", (unsigned long long)off,
				  strerror(errno));
	}
	close(fd);
	if (!(entry & PAGEMAP_PRESENT) || !(entry & PAGEMAP_PFN_MASK))
		return ep_set_err(EP_ERR, "pagemap entry 0x%016llx for %p: page absent or PFN "
				  "hidden", (unsigned long long)entry, va);
	*pa = (entry & PAGEMAP_PFN_MASK) * PAGE_SZ;
	return EP_OK;
}

static enum result identity_body(const struct opts *o, struct ep *ep, struct type_arg *arg)
{
	struct tg_counters tc, before, ret;
	uint8_t *page;
	uint64_t pa = 0;
	struct tg_cfg cfg = { .size = PAGE_SZ, .stride = o->stride, .rate = o->rate };
	enum result res;

	page = dma_buf(PAGE_SZ);
	EXPECT(page, "%s", ep_err);
	EXPECT(!mlock(page, PAGE_SZ), "mlock: %s", strerror(errno));
	TRY("physical address of the target page", phys_addr(page, &pa));
	cfg.base = pa;
	diag("target page VA %p PA 0x%llx, group type file %s", (void *)page,
	     (unsigned long long)pa, arg->path);
	TRY("bus master on", pci_bus_master(&ep->pci, true));
	ep_marker(ep, COSIM_EP_MARKER_TAG_TEST_BEGIN, o->count, "identity sysfs");
	ep_tg_start(ep, &cfg);

	for (unsigned i = 1; i <= o->count; i++) {
		int rc;

		arg->type = "identity";
		rc = do_switch(ep, i, "DMA->identity", sw_type, arg, &before, &ret);
		if (rc)
			return lib_result(rc, "group type -> identity");
		ep_wr64(ep, COSIM_EP_TG_TAG, i);
		if ((res = expect_landing(ep, o, i, "DMA->identity", page, PAGE_SZ, pa, &ret)) !=
		    R_PASS)
			return res;
		arg->type = "DMA";
		rc = do_switch(ep, i, "identity->DMA", sw_type, arg, &before, &ret);
		if (rc)
			return lib_result(rc, "group type -> DMA");
		if ((res = expect_refused(ep, o, i, "identity->DMA", page, PAGE_SZ, pa, &ret)) !=
		    R_PASS)
			return res;
	}
	ep_tg_stop(ep);
	ep_marker(ep, COSIM_EP_MARKER_TAG_TEST_END, o->count, NULL);
	ep_tg_read(ep, &tc);
	tg_diag("final", &tc);
	return R_PASS;
}

/* The group as the case found it, put back by a teardown hook whatever happened, also when
 * the case is killed; static because the hook runs after the case's stack is gone. */
static struct restore {
	struct ep ep;
	struct type_arg arg;
	char orig[32];
} restore;

static void restore_group_type(void *p)
{
	struct restore *r = p;
	struct tg_counters before, ret;

	ep_tg_stop(&r->ep);
	pci_bus_master(&r->ep.pci, false);
	r->arg.type = r->orig;
	if (do_switch(&r->ep, 0, "restore group type", sw_type, &r->arg, &before, &ret))
		diag("restoring group type '%s' failed: %s", r->orig, ep_err);
}

static enum result identity_sysfs(const struct opts *o)
{
	struct restore *r = &restore;

	TRY("open endpoint through sysfs (no driver)", ep_open_sysfs(&r->ep, o->bdf));
	EXPECT(r->ep.pci.group >= 0, "%s has no IOMMU group", r->ep.pci.bdf);
	snprintf(r->arg.path, sizeof(r->arg.path), "/sys/kernel/iommu_groups/%d/type",
		 r->ep.pci.group);
	if (!path_exists(r->arg.path))
		return unsupported("iommu group type switching (no %s)", r->arg.path);
	TRY("read group type", sysfs_read(r->arg.path, r->orig, sizeof(r->orig)));
	if (strcmp(r->orig, "DMA") && strcmp(r->orig, "DMA-FQ") && strcmp(r->orig, "identity"))
		snprintf(r->orig, sizeof(r->orig), "auto");
	EXPECT(!tap_on_teardown(restore_group_type, r), "cannot register the group type restore");
	return identity_body(o, &r->ep, &r->arg);
}

static const struct tcase cases[] = {
	TCASE(blocked_untranslated,
	      "iommufd paging <-> blocked under untranslated traffic: aborts only while blocked"),
	TCASE(blocked_ats, "the same with ATS traffic"),
	TCASE(identity_sysfs,
	      "group type identity <-> DMA (no driver) under traffic to a physical page"),
};

COSIM_SUITE(cosim_blocked, cases,
	    .summary = "Paging <-> blocked (iommufd detach) and paging <-> identity (group "
		       "type in sysfs) under traffic.",
	    .params = "--count --settle --timeout-ms --rate --stride --size --no-ats --bdf",
	    .defaults = { .count = 20, .settle = 16, .timeout_ms = 10000, .rate = 4,
			  .stride = 64, .pasid = 1, .case_timeout_s = 300, .size = 0x10000,
			  .ats = true });
