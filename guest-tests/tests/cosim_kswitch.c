// SPDX-License-Identifier: MIT
/*
 * Area kswitch: a kernel driver switches its own device between domains under traffic. The
 * guest-kmod test driver (cosim_ep_dma.ko) binds the endpoint and, in one debugfs case,
 * starts the traffic generator and switches the device --count times each way between the
 * group's default domain and an unmanaged paging domain of its own, with
 * iommu_attach_device() / iommu_detach_device():
 *   dmaswitch_*       default DMA domain <-> paging domain mapping the same IOVAs to the
 *                     same pages (a CD replace: both are stage 1);
 *   identityswitch_*  default identity domain (this test writes "identity" to the group's
 *                     type before binding, and puts the type back) <-> paging domain
 *                     mapping IOVA == PA, so both translate the traffic (an STE bypass <->
 *                     translate switch, ATS Enable toggled with it).
 * The module judges each state from the switch's return on (no failure counted, records and
 * an engine copy landing; ATS traffic under identity refused by the device since ATS Enable
 * is clear) and brackets every switch by attach markers; failures inside the switch calls
 * are reported (during_refused) and left to the trace analysis. This test loads and binds
 * the module, sets the group type and the module's parameters, runs the case, judges its
 * line, and gives the device back as it found it, also when the case is killed.
 */
#include <stdio.h>
#include <string.h>

#include "cosim.h"

/* The device and group as the case found them (kmod_restore puts them back). */
static struct kmod_restore restore;

/*
 * Judge the module's line: "ok <name> switches=<count> default=<type> ..." with the default
 * domain the one the case asked for, ATS Enable as the driver must leave it in each state,
 * records landing, and for ATS traffic ATS actually used.
 */
static enum result judge(const struct opts *o, const char *name, const char *line,
			 bool identity, bool ats)
{
	struct kmod_switch k;
	enum result res = kmod_switch_judge(line, name, o->count, identity, &k);

	if (res != R_PASS)
		return res;
	diag("%llu switches each way; %llu records landed after returns, %llu ATS records "
	     "refused by the device under identity; %llu translation failures or aborts inside "
	     "the switch calls (for the analysis to judge)", (unsigned long long)k.switches,
	     (unsigned long long)k.landed, (unsigned long long)k.dropped,
	     (unsigned long long)k.during);
	EXPECT(k.ats_paging == 1, "ATS Control.Enable under the paging domain read %lld",
	       (long long)k.ats_paging);
	EXPECT(k.ats_default == (identity ? 0 : 1),
	       "ATS Control.Enable under the default domain read %lld, expected %d",
	       (long long)k.ats_default, identity ? 0 : 1);
	EXPECT(k.landed > 0, "no record landed after any switch: %s", line);
	if (ats)
		EXPECT(k.ats_req + k.atc_hit > 0, "ATS traffic with no ATS request and no ATC "
		       "hit: %s", line);
	if (ats && identity)
		EXPECT(k.dropped > 0, "ATS traffic under identity (ATS Enable clear) was never "
		       "refused by the device: %s", line);
	return R_PASS;
}

static enum result run_case(const struct opts *o, const char *name, bool identity, bool ats)
{
	struct kmod_restore *r = &restore;
	char line[1024] = "", type[32] = "?";
	char path[300];
	bool ats_on = false;

	if (ats && !o->ats)
		return skip("--no-ats");
	if (!kmod_present())
		return unsupported("no " KMOD_NAME " module built for it (no " KMOD_PATH ")");
	TRY(identity ? "bind " KMOD_NAME ", default domain identity (group type, no driver bound)"
		     : "bind " KMOD_NAME, kmod_setup(r, o->bdf, identity));
	snprintf(path, sizeof(path), "%s/iommu_group/type", r->ep.pci.sysdir);
	sysfs_read(path, type, sizeof(type));
	pci_ats_enabled(&r->ep.pci, &ats_on);
	diag("bound to " KMOD_NAME ": iommu group type %s, ATS Control.Enable %d", type, ats_on);
	TRY("module parameter switch_count", kmod_param("switch_count", o->count));
	TRY("module parameter switch_settle", kmod_param("switch_settle", o->settle));
	TRY("run the case (read its debugfs file)",
	    kmod_run_case(&r->ep, name, line, sizeof(line)));
	diag("%s", line);
	return judge(o, name, line, identity, ats);
}

static enum result dmaswitch_untranslated(const struct opts *o)
{
	return run_case(o, "dmaswitch_untranslated", false, false);
}

static enum result dmaswitch_ats(const struct opts *o)
{
	return run_case(o, "dmaswitch_ats", false, true);
}

static enum result identityswitch_untranslated(const struct opts *o)
{
	return run_case(o, "identityswitch_untranslated", true, false);
}

static enum result identityswitch_ats(const struct opts *o)
{
	return run_case(o, "identityswitch_ats", true, true);
}

static const struct tcase cases[] = {
	TCASE(dmaswitch_untranslated,
	      "default DMA domain <-> unmanaged paging domain (same IOVAs, same pages) under "
	      "untranslated traffic"),
	TCASE(dmaswitch_ats, "the same with ATS traffic"),
	TCASE(identityswitch_untranslated,
	      "default identity domain <-> unmanaged paging domain (IOVA == PA) under "
	      "untranslated traffic"),
	TCASE(identityswitch_ats,
	      "the same with ATS traffic: ATS Enable toggles with every switch"),
};

COSIM_SUITE(cosim_kswitch, cases,
	    .summary = "A kernel driver switches its device between its default domain (DMA or "
		       "identity) and unmanaged paging domains under traffic (cosim_ep_dma "
		       "module, iommu_attach_device/iommu_detach_device).",
	    .params = "--count --settle --no-ats --bdf --only",
	    .defaults = { .count = 100, .settle = 8, .timeout_ms = 5000, .rate = 4, .stride = 64,
			  .pasid = 1, .case_timeout_s = 240, .size = 0x10000, .ats = true });
