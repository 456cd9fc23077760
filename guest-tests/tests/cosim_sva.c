// SPDX-License-Identifier: MIT
/*
 * Area sva: shared virtual addressing, the case that made the driver's domain changes
 * hitless for ATS. The guest-kmod test driver (cosim_ep_dma.ko) owns the endpoint; this
 * process binds its own address space to it through the driver's "sva" file
 * (iommu_sva_bind_device(), cosim_kmod.h), gets the PASID, and drives the endpoint's DMA
 * engine and traffic generator with that PASID and its own virtual addresses, BAR0 mapped
 * through sysfs. Linux's arm-smmu-v3 has no PRI: a device fault on an SVA PASID is a
 * failure, not a page-in, so every buffer is written (dirty, Access flag set) and locked
 * before the device sees it.
 *   sva_dma_*         engine copies through the PASID, data checked; with ATS the second
 *                     copy hits the ATC.
 *   sva_munmap_*, sva_mprotect_ats, sva_madvise_ats
 *                     the generator sweeps a window (a memfd mapped twice: the device uses
 *                     one mapping, the test reads the other) while one page of it is
 *                     unmapped, made read-only or zapped; after the syscall returns no
 *                     record lands in that page (the mm notifier's TLBI and ATC_INV with the
 *                     PASID completed first), the other pages keep receiving records, and
 *                     the changed page's records fail.
 *   sva_unbind_ats    the bond goes while the generator runs: after the unbind returns no
 *                     record lands anywhere.
 *   svaswitch_*       the seed's scenario: the generator's PASID traffic runs while the
 *                     driver switches the RID --count times each way between its default
 *                     domain (DMA, or identity: the group's type) and an unmanaged paging
 *                     domain. The PASID must never see a translation failure or an abort,
 *                     and ATS Enable must stay set in every state.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cosim.h"
#include "cosim_kmod.h"

/* The device as the case found it, the bond and the BAR (teardown hooks undo them). */
static struct sva {
	struct kmod_restore r;
	int fd;
	uint32_t pasid;
	bool mapped;
} sva;

/* Before the device goes back: the generator stopped, the bond released (closing the file
 * unbinds), while the module still owns the device. */
static void sva_close(void *p)
{
	struct sva *s = p;

	if (s->mapped)
		ep_tg_stop(&s->r.ep);
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
}

/* Take the device with the module, map BAR0 and bind this process (identity: the group's
 * default domain identity first). */
static int sva_open(const struct opts *o, bool identity)
{
	struct sva *s = &sva;
	struct cosim_sva_bind b = { 0 };
	bool ats_on = false;
	int rc;

	s->fd = -1;
	s->mapped = false;
	if (!kmod_present())
		return ep_set_err(EP_UNSUP, "no " KMOD_NAME " module built for it (no "
				  KMOD_PATH ")");
	if ((rc = kmod_setup(&s->r, o->bdf, identity)))
		return rc;
	if (tap_on_teardown(sva_close, s))
		return ep_set_err(EP_ERR, "cannot register the bond's release");
	if ((rc = ep_map_bar(&s->r.ep)))
		return rc;
	s->mapped = true;
	s->fd = kmod_open(&s->r.ep, "sva", O_RDWR);
	if (s->fd < 0)
		return EP_ERR;
	if (ioctl(s->fd, COSIM_SVA_BIND, &b)) {
		int e = errno;

		/* The module's EOPNOTSUPP: the driver would not enable the SVA feature for the
		 * device at all (its reason is in the kernel log): the kernel cannot run the area. */
		if (e == EOPNOTSUPP)
			return ep_set_err(EP_UNSUP, "SVA for this device (the driver refused "
					  "iommu_dev_enable_feature(IOMMU_DEV_FEAT_SVA): see the "
					  "kernel log)");
		/* The kernel's refusal is the result: the model or the platform lacks what the
		 * driver wants for SVA (see the kernel log for the reason it printed). */
		return ep_set_err(EP_ERR, "the kernel refused SVA: bind returned %s (errno %d)",
				  strerror(e), e);
	}
	s->pasid = b.pasid;
	pci_ats_enabled(&s->r.ep.pci, &ats_on);
	diag("bound pid %d to %s: PASID %u, ATS Control.Enable %d", getpid(), s->r.ep.pci.bdf,
	     s->pasid, ats_on);
	if (!s->pasid)
		return ep_set_err(EP_ERR, "the bond's PASID is 0");
	return EP_OK;
}

/* Process memory the device may use: written (so dirty, Access flag set) and locked. */
static void *process_buf(uint64_t len)
{
	uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	memset(p, 0x5a, len);
	if (mlock(p, len)) {
		munmap(p, len);
		return NULL;
	}
	return p;
}

static enum result dma_copies(const struct opts *o, bool ats)
{
	struct ep *ep = &sva.r.ep;
	uint64_t len = 4 * PAGE_SZ;
	uint8_t *src, *dst;
	struct ep_counters before, after;
	struct dma_desc d = { .op = COSIM_EP_DMA_OP_COPY, .len = len,
			      .flags = COSIM_EP_DMA_FLAG_PASID | (ats ? COSIM_EP_DMA_FLAG_ATS : 0) };
	struct dma_res res;

	if (ats && !o->ats)
		return skip("--no-ats");
	TRY("bind the process (SVA)", sva_open(o, false));
	src = process_buf(len);
	dst = process_buf(len);
	EXPECT(src && dst, "cannot map and lock 2 x %llu bytes: %s", (unsigned long long)len,
	       strerror(errno));
	d.pasid = sva.pasid;
	d.src = (uintptr_t)src;
	d.dst = (uintptr_t)dst;
	ep_marker(ep, COSIM_EP_MARKER_TAG_TEST_BEGIN, sva.pasid, ats ? "sva dma ats" : "sva dma");
	for (int round = 0; round < 2; round++) {
		for (uint64_t i = 0; i < len; i++)
			src[i] = (uint8_t)(i * 7 + round * 13 + 1);
		memset(dst, 0, len);
		ep_counters_read(ep, &before);
		TRY("run the copy", ep_dma(ep, &d, &res));
		ep_counters_read(ep, &after);
		if (res.status & COSIM_EP_DMA_STATUS_ERROR)
			return fail("copy %d through PASID %u (%s): DMA_STATUS 0x%x (%s) after %llu "
				    "bytes", round, sva.pasid, ats ? "ATS" : "untranslated",
				    res.status, dma_err_name(dma_err_code(res.status)),
				    (unsigned long long)res.result);
		EXPECT(!memcmp(src, dst, len), "copy %d through PASID %u: the destination differs "
		       "from the source", round, sva.pasid);
		if (ats && round == 0)
			EXPECT(after.ats_req > before.ats_req, "ATS copy sent no Translation Request");
		if (ats && round == 1)
			EXPECT(after.atc_hit > before.atc_hit, "the second ATS copy of the same pages "
			       "hit no ATC entry (ats_req +%llu)",
			       (unsigned long long)(after.ats_req - before.ats_req));
	}
	ep_marker(ep, COSIM_EP_MARKER_TAG_TEST_END, sva.pasid, NULL);
	counters_diag("final", &after);
	return R_PASS;
}

static enum result sva_dma_untranslated(const struct opts *o)
{
	return dma_copies(o, false);
}

static enum result sva_dma_ats(const struct opts *o)
{
	return dma_copies(o, true);
}

enum mm_change { MM_MUNMAP, MM_MPROTECT, MM_MADVISE, MM_UNBIND };

static const char *const change_name[] = { "munmap", "mprotect(PROT_READ)",
					   "madvise(MADV_DONTNEED)", "unbind" };

/*
 * The generator sweeps `pages` pages of a memfd through the PASID at VA `dev`; the test
 * reads the same pages at `cpu`. One page (the last) is changed by `how` under traffic (or
 * the whole bond goes); after the call returns, with TG_SEQ read as S and a full sweep
 * later: no record numbered >= S in the changed page (every page, for an unbind), every
 * other page received one, and the changed page's records failed.
 */
static enum result mm_change(const struct opts *o, enum mm_change how, bool ats)
{
	struct ep *ep = &sva.r.ep;
	uint64_t pages = o->size / PAGE_SZ, len = o->size, sweep = o->size / o->stride;
	uint64_t p = pages - 1;
	struct tg_counters tc, ret;
	struct ep_counters k;
	uint8_t *dev, *cpu;
	int mfd, rc;
	char label[32];

	if (ats && !o->ats)
		return skip("--no-ats");
	if (pages < 2 || PAGE_SZ % o->stride)
		return fail("--size 0x%llx / --stride %u: need >= 2 pages and a stride dividing the "
			    "page", (unsigned long long)o->size, o->stride);
	TRY("bind the process (SVA)", sva_open(o, false));
	mfd = memfd_create("cosim-sva", MFD_CLOEXEC);
	EXPECT(mfd >= 0 && !ftruncate(mfd, (off_t)len), "memfd of %llu bytes: %s",
	       (unsigned long long)len, strerror(errno));
	dev = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	cpu = mmap(NULL, len, PROT_READ, MAP_SHARED, mfd, 0);
	EXPECT(dev != MAP_FAILED && cpu != MAP_FAILED, "mapping the memfd twice: %s",
	       strerror(errno));
	memset(dev, 0, len);
	EXPECT(!mlock(dev, len), "mlock: %s", strerror(errno));
	struct tg_cfg cfg = { .base = (uintptr_t)dev, .size = len, .stride = o->stride,
			      .rate = o->rate, .ats = ats, .use_pasid = true, .pasid = sva.pasid };

	snprintf(label, sizeof(label), "sva %s%s", how == MM_UNBIND ? "unbind" : "mm",
		 ats ? " ats" : "");
	diag("%llu pages at VA %p (read back at %p), PASID %u, %s of page %llu, %s",
	     (unsigned long long)pages, (void *)dev, (void *)cpu, sva.pasid, change_name[how],
	     (unsigned long long)p, ats ? "ATS" : "untranslated");
	ep_marker(ep, COSIM_EP_MARKER_TAG_TEST_BEGIN, sva.pasid, label);
	ep_tg_start(ep, &cfg);
	TRY("first sweep", ep_tg_wait_seq(ep, sweep + o->settle, o->timeout_ms, &tc));
	if (tg_failures(&tc)) {
		tg_diag("before the change", &tc);
		return fail("failures while everything was mapped");
	}
	for (uint64_t q = 0; q < pages; q++) {
		struct tg_scan s;

		tg_scan(cpu + q * PAGE_SZ, PAGE_SZ, (uintptr_t)dev + q * PAGE_SZ, o->stride, &s);
		EXPECT(s.records && !s.misplaced, "first sweep: page %llu holds %llu records, %llu "
		       "misplaced", (unsigned long long)q, (unsigned long long)s.records,
		       (unsigned long long)s.misplaced);
	}
	/* A page the syscall changes: munlock first where the kernel refuses a locked one. */
	if (how == MM_MADVISE)
		EXPECT(!munlock(dev + p * PAGE_SZ, PAGE_SZ), "munlock: %s", strerror(errno));
	if (how != MM_UNBIND)
		ep_marker(ep, COSIM_EP_MARKER_TAG_UNMAP_BEGIN, (uintptr_t)dev + p * PAGE_SZ,
			  change_name[how]);
	switch (how) {
	case MM_MUNMAP:
		rc = munmap(dev + p * PAGE_SZ, PAGE_SZ);
		break;
	case MM_MPROTECT:
		rc = mprotect(dev + p * PAGE_SZ, PAGE_SZ, PROT_READ);
		break;
	case MM_MADVISE:
		rc = madvise(dev + p * PAGE_SZ, PAGE_SZ, MADV_DONTNEED);
		break;
	default:
		rc = ioctl(sva.fd, COSIM_SVA_UNBIND);
		break;
	}
	int e = errno;

	ep_tg_read_ret(ep, &ret);
	if (how != MM_UNBIND)
		ep_marker(ep, COSIM_EP_MARKER_TAG_UNMAP_END, (uintptr_t)dev + p * PAGE_SZ,
			  change_name[how]);
	EXPECT(!rc, "%s: %s (errno %d)", change_name[how], strerror(e), e);
	ep_wr64(ep, COSIM_EP_TG_TAG, 1);
	TRY("sweep after the change", ep_tg_wait_seq(ep, ret.seq + sweep + o->settle,
						     o->timeout_ms, &tc));
	ep_tg_stop(ep);
	for (uint64_t q = 0; q < pages; q++) {
		struct tg_scan s;
		bool changed = how == MM_UNBIND || q == p;

		tg_scan(cpu + q * PAGE_SZ, PAGE_SZ, (uintptr_t)dev + q * PAGE_SZ, o->stride, &s);
		if (s.misplaced)
			return fail("page %llu holds %llu records for another address (first at "
				    "offset 0x%llx)", (unsigned long long)q,
				    (unsigned long long)s.misplaced,
				    (unsigned long long)s.first_misplaced_off);
		if (changed && s.records && s.max_seq >= ret.seq) {
			tg_diag("counters", &tc);
			return fail("record seq %llu (tag %llu) landed in page %llu (VA %p, offset "
				    "0x%llx) after the %s returned with TG_SEQ %llu",
				    (unsigned long long)s.max_seq, (unsigned long long)s.max_seq_tag,
				    (unsigned long long)q, (void *)(dev + q * PAGE_SZ),
				    (unsigned long long)s.max_seq_off, change_name[how],
				    (unsigned long long)ret.seq);
		}
		if (!changed && (!s.records || s.max_seq < ret.seq)) {
			tg_diag("counters", &tc);
			return fail("page %llu got no record numbered >= %llu after the %s (%llu "
				    "records, max seq %llu)", (unsigned long long)q,
				    (unsigned long long)ret.seq, change_name[how],
				    (unsigned long long)s.records, (unsigned long long)s.max_seq);
		}
	}
	ep_marker(ep, COSIM_EP_MARKER_TAG_TEST_END, sva.pasid, NULL);
	tg_diag("final", &tc);
	ep_counters_read(ep, &k);
	counters_diag("final", &k);
	EXPECT(tg_failures(&tc) > tg_failures(&ret), "a full sweep after the %s counted no "
	       "failure for the changed page (%llu before, %llu after)", change_name[how],
	       (unsigned long long)tg_failures(&ret), (unsigned long long)tg_failures(&tc));
	EXPECT(k.inv_cpl == k.inv_req, "%llu ATS invalidation requests, %llu completions",
	       (unsigned long long)k.inv_req, (unsigned long long)k.inv_cpl);
	if (ats && how != MM_UNBIND)
		EXPECT(k.inv_req > 0, "the %s sent the device no ATS invalidation",
		       change_name[how]);
	return R_PASS;
}

static enum result sva_munmap_ats(const struct opts *o)
{
	return mm_change(o, MM_MUNMAP, true);
}

static enum result sva_munmap_untranslated(const struct opts *o)
{
	return mm_change(o, MM_MUNMAP, false);
}

static enum result sva_mprotect_ats(const struct opts *o)
{
	return mm_change(o, MM_MPROTECT, true);
}

static enum result sva_madvise_ats(const struct opts *o)
{
	return mm_change(o, MM_MADVISE, true);
}

static enum result sva_unbind_ats(const struct opts *o)
{
	return mm_change(o, MM_UNBIND, true);
}

/*
 * The module's line for a switch case under PASID traffic: every state after every switch
 * return kept ATS on and the PASID's records landing, and (the driver authors' claim) the
 * PASID saw no failure inside the switch calls either.
 */
static enum result judge_switch(const struct opts *o, const char *name, const char *line,
				bool identity, bool ats)
{
	struct kmod_switch k;
	enum result res = kmod_switch_judge(line, name, o->count, identity, &k);

	if (res != R_PASS)
		return res;
	EXPECT(k.ats_paging == 1 && k.ats_default == 1, "ATS Control.Enable read %lld under the "
	       "paging domain and %lld under the default one, with an SVA PASID bound",
	       (long long)k.ats_paging, (long long)k.ats_default);
	EXPECT(k.landed > 0 && !k.dropped, "PASID records: %llu landed, %llu refused by the "
	       "device", (unsigned long long)k.landed, (unsigned long long)k.dropped);
	EXPECT(!k.during && !k.during_ats, "the SVA PASID's traffic met %llu translation failures "
	       "or aborts and %llu ATS errors inside the RID's switch calls",
	       (unsigned long long)k.during, (unsigned long long)k.during_ats);
	if (ats)
		EXPECT(k.ats_req + k.atc_hit > 0, "ATS traffic with no ATS request and no ATC hit");
	return R_PASS;
}

static enum result svaswitch(const struct opts *o, const char *name, bool identity, bool ats)
{
	struct cosim_sva_switch a;
	uint32_t atc;
	uint64_t pages;
	uint8_t *buf;

	if (ats && !o->ats)
		return skip("--no-ats");
	TRY(identity ? "bind the process (SVA), default domain identity"
		     : "bind the process (SVA)", sva_open(o, identity));
	TRY("module parameter switch_count", kmod_param("switch_count", o->count));
	TRY("module parameter switch_settle", kmod_param("switch_settle", o->settle));
	/* Twice the ATC's entries, one record a page: ATS traffic keeps asking for translations
	 * through every switch, as in kswitch. */
	atc = ep_rd32(&sva.r.ep, COSIM_EP_ATC_SIZE);
	pages = 2ULL * atc;
	pages = pages < 8 ? 8 : pages > 256 ? 256 : pages;
	buf = process_buf(pages * PAGE_SZ);
	EXPECT(buf, "cannot map and lock %llu pages: %s", (unsigned long long)pages,
	       strerror(errno));
	memset(&a, 0, sizeof(a));
	a.base = (uintptr_t)buf;
	a.size = pages * PAGE_SZ;
	a.flags = (identity ? COSIM_SVA_SWITCH_IDENTITY : 0) | (ats ? COSIM_SVA_SWITCH_ATS : 0);
	if (ioctl(sva.fd, COSIM_SVA_SWITCH, &a))
		return fail("the switch ioctl: %s (errno %d)", strerror(errno), errno);
	diag("%s", a.line);
	return judge_switch(o, name, a.line, identity, ats);
}

static enum result svaswitch_dma_ats(const struct opts *o)
{
	return svaswitch(o, "svaswitch_dma_ats", false, true);
}

static enum result svaswitch_dma_untranslated(const struct opts *o)
{
	return svaswitch(o, "svaswitch_dma_untranslated", false, false);
}

static enum result svaswitch_identity_ats(const struct opts *o)
{
	return svaswitch(o, "svaswitch_identity_ats", true, true);
}

static enum result svaswitch_identity_untranslated(const struct opts *o)
{
	return svaswitch(o, "svaswitch_identity_untranslated", true, false);
}

static const struct tcase cases[] = {
	TCASE(sva_dma_untranslated, "engine copies through the SVA PASID, untranslated"),
	TCASE(sva_dma_ats, "the same with ATS; the second copy hits the ATC"),
	TCASE(sva_munmap_ats, "munmap a page under ATS PASID traffic: nothing lands after"),
	TCASE(sva_munmap_untranslated, "the same with untranslated PASID traffic"),
	TCASE(sva_mprotect_ats, "mprotect(PROT_READ) a page under ATS PASID writes"),
	TCASE(sva_madvise_ats, "madvise(MADV_DONTNEED) a page under ATS PASID traffic"),
	TCASE(sva_unbind_ats, "unbind under ATS PASID traffic: nothing lands after"),
	TCASE(svaswitch_dma_ats, "RID default DMA <-> paging domain under ATS SVA traffic"),
	TCASE(svaswitch_dma_untranslated, "the same with untranslated SVA traffic"),
	TCASE(svaswitch_identity_ats, "RID identity <-> paging domain under ATS SVA traffic"),
	TCASE(svaswitch_identity_untranslated, "the same with untranslated SVA traffic"),
};

COSIM_SUITE(cosim_sva, cases,
	    .summary = "Shared virtual addressing: a process's address space bound to the "
		       "endpoint (cosim_ep_dma module), DMA and mm changes through its PASID, "
		       "and the RID's domain switched under the PASID's traffic.",
	    .params = "--count --settle --timeout-ms --rate --stride --size --no-ats --bdf --only",
	    .defaults = { .count = 100, .settle = 8, .timeout_ms = 20000, .rate = 4,
			  .stride = 256, .pasid = 1, .case_timeout_s = 300, .size = 0x10000,
			  .ats = true });
