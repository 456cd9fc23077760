// SPDX-License-Identifier: MIT
/*
 * Area kdma: DMA through the kernel's default DMA domain. Every other area drives the
 * endpoint from userspace through VFIO/iommufd domains; here a kernel driver
 * (guest-kmod/cosim_ep_dma.ko, shipped at /lib/cosim) binds the endpoint, so the arm-smmu-v3
 * driver serves it with the group's default DMA domain, and the driver's buffers come from
 * the DMA API (dma_alloc_coherent, dma_map_single). The module runs the endpoint's DMA
 * engine copy between them and reports one line per case; this test loads the module, binds
 * it with driver_override (it has no ID table, so it never takes the device by itself),
 * reads the case's debugfs file, judges the line, and puts the device back as it found it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cosim.h"

/*
 * Judge the module's line for `name`: "ok <name> ..." with the domain a translating DMA
 * domain and each buffer's IOVA different from its physical address (the page table, walked
 * by the module, agreeing with the CPU's physical address is part of the module's "ok").
 */
static enum result judge(const char *name, const char *line, bool ats)
{
	char word[8] = "", got[64] = "", dom[32] = "";
	uint64_t iova_src, pa_src, iova_dst, pa_dst;
	bool ok = true;

	sscanf(line, "%7s %63s", word, got);
	EXPECT(!strcmp(got, name), "the module answered for case '%s', expected '%s'", got, name);
	EXPECT(!strcmp(word, "ok"), "the module reports a failure: %s", line);
	kmod_field(line, "domain", dom, sizeof(dom));
	iova_src = kmod_num(line, "iova_src", &ok);
	pa_src = kmod_num(line, "pa_src", &ok);
	iova_dst = kmod_num(line, "iova_dst", &ok);
	pa_dst = kmod_num(line, "pa_dst", &ok);
	EXPECT(ok, "cannot parse the addresses in: %s", line);
	diag("source:      IOVA 0x%016llx -> PA 0x%016llx", (unsigned long long)iova_src,
	     (unsigned long long)pa_src);
	diag("destination: IOVA 0x%016llx -> PA 0x%016llx", (unsigned long long)iova_dst,
	     (unsigned long long)pa_dst);
	EXPECT(!strcmp(dom, "DMA") || !strcmp(dom, "DMA-FQ"),
	       "the device's domain is '%s', not the default translating DMA domain", dom);
	EXPECT(iova_src != pa_src && iova_dst != pa_dst,
	       "an IOVA equals its physical address (src 0x%llx/0x%llx, dst 0x%llx/0x%llx): "
	       "nothing shows the SMMU translated", (unsigned long long)iova_src,
	       (unsigned long long)pa_src, (unsigned long long)iova_dst,
	       (unsigned long long)pa_dst);
	if (ats) {
		uint64_t reqs = 0, hits = 0;
		char v[24];

		if (kmod_field(line, "ats_req", v, sizeof(v)))
			reqs = strtoull(v, NULL, 0);
		if (kmod_field(line, "atc_hit", v, sizeof(v)))
			hits = strtoull(v, NULL, 0);
		EXPECT(reqs + hits > 0, "ATS copy with no ATS request and no ATC hit: %s", line);
	}
	return R_PASS;
}

static enum result run_case(const struct opts *o, const char *name, bool ats)
{
	struct ep ep;
	struct kmod_saved sv = { "", KMOD_NO_OVERRIDE };
	char path[400], type[64] = "?", line[1024] = "";
	enum result res;
	bool ats_on = false;
	int rc;

	if (ats && !o->ats)
		return skip("--no-ats");
	if (!kmod_present())
		return unsupported("no " KMOD_NAME " module built for it (no " KMOD_PATH ")");
	TRY("find endpoint", ep_find(&ep, o->bdf));
	rc = kmod_take(&ep, &sv);
	if (rc) {
		res = lib_result(rc, "bind " KMOD_NAME);
		goto out;
	}
	/* With DT the group exists from the first driver bind: read it now. */
	snprintf(path, sizeof(path), "%s/iommu_group/type", ep.pci.sysdir);
	sysfs_read(path, type, sizeof(type));
	pci_ats_enabled(&ep.pci, &ats_on);
	diag("bound to " KMOD_NAME ": iommu group type %s, ATS Control.Enable %d", type, ats_on);
	rc = kmod_run_case(&ep, name, line, sizeof(line));
	if (rc) {
		res = lib_result(rc, "run the case (read its debugfs file)");
		goto out;
	}
	diag("%s", line);
	res = judge(name, line, ats);
out:
	/* The device goes back to its driver whatever the case found. */
	rc = kmod_give_back(&ep, &sv);
	if (rc) {
		diag("giving the device back failed: %s", ep_err);
		if (res == R_PASS)
			res = fail("step 'unbind, unload, rebind %s' failed",
				   *sv.driver ? sv.driver : "(none)");
	}
	ep_close(&ep);
	return res;
}

static enum result copy_coherent_untranslated(const struct opts *o)
{
	return run_case(o, "copy_coherent_untranslated", false);
}

static enum result copy_coherent_ats(const struct opts *o)
{
	return run_case(o, "copy_coherent_ats", true);
}

static enum result copy_streaming_untranslated(const struct opts *o)
{
	return run_case(o, "copy_streaming_untranslated", false);
}

static enum result copy_streaming_ats(const struct opts *o)
{
	return run_case(o, "copy_streaming_ats", true);
}

static const struct tcase cases[] = {
	TCASE(copy_coherent_untranslated,
	      "engine copy between dma_alloc_coherent buffers, untranslated requests"),
	TCASE(copy_coherent_ats,
	      "engine copy between dma_alloc_coherent buffers through the ATC (ATS)"),
	TCASE(copy_streaming_untranslated,
	      "engine copy between dma_map_single buffers (unaligned), untranslated requests"),
	TCASE(copy_streaming_ats,
	      "engine copy between dma_map_single buffers (unaligned) through the ATC (ATS)"),
};

COSIM_SUITE(cosim_kdma, cases,
	    .summary = "Endpoint DMA through the kernel's default DMA domain: the cosim_ep_dma "
		       "module copies between DMA-API buffers (IOVA != PA).",
	    .params = "--no-ats --bdf --only",
	    .defaults = { .count = 1, .settle = 8, .timeout_ms = 5000, .rate = 1, .stride = 64,
			  .pasid = 1, .case_timeout_s = 60, .size = 0x10000, .ats = true });
