// SPDX-License-Identifier: MIT
/*
 * Area 1: the SMMU probed, the endpoint sits alone in its IOMMU group, and the driver turned
 * on PASID (at probe) and ATS (with a translating domain) in the endpoint's config space:
 * with the default DMA domain once vfio-pci is bound, and again once an iommufd paging
 * domain is attached through VFIO.
 */
#include <dirent.h>
#include <stdio.h>
#include <string.h>

#include <linux/pci_regs.h>

#include "cosim.h"

static enum result smmu_probed(const struct opts *o)
{
	DIR *d = opendir("/sys/class/iommu");
	struct dirent *de;
	char names[512] = "";
	int found = 0;

	(void)o;
	EXPECT(d, "/sys/class/iommu does not exist: no IOMMU driver registered");
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (strlen(names) + strlen(de->d_name) + 2 < sizeof(names)) {
			strcat(names, " ");
			strcat(names, de->d_name);
		}
		/* arm-smmu-v3 registers "smmu3.<base address>". */
		if (strstr(de->d_name, "smmu3"))
			found++;
	}
	closedir(d);
	diag("/sys/class/iommu:%s", *names ? names : " (empty)");
	EXPECT(found == 1, "%d smmu3 entries in /sys/class/iommu, expected 1", found);
	return R_PASS;
}

static enum result endpoint_found(const struct opts *o)
{
	struct ep ep;
	char drv[64];

	TRY("find endpoint", ep_find(&ep, o->bdf));
	diag("endpoint %s driver '%s' iommu_group %d ATS cap @0x%x PASID cap @0x%x", ep.pci.bdf,
	     pci_driver(&ep.pci, drv, sizeof(drv)), ep.pci.group, ep.pci.ats_cap, ep.pci.pasid_cap);
	EXPECT(ep.pci.ats_cap, "%s has no ATS extended capability in config space", ep.pci.bdf);
	EXPECT(ep.pci.pasid_cap, "%s has no PASID extended capability in config space", ep.pci.bdf);
	ep_close(&ep);
	return R_PASS;
}

/*
 * With DT the IOMMU driver's probe_device runs when a driver first binds (dma_configure), so
 * an endpoint no driver has claimed has no group yet: bind vfio-pci (opening nothing) first.
 * The group, and what probe_device and the default domain's attach did to config space, are
 * then checked on the device as the kernel left it.
 */
static enum result bind_for_probe(struct ep *ep, const struct opts *o)
{
	char drv[64];
	int group_before;

	TRY("find endpoint", ep_find(ep, o->bdf));
	group_before = ep->pci.group;
	diag("before binding: driver '%s', iommu_group %d", pci_driver(&ep->pci, drv, sizeof(drv)),
	     group_before);
	ep_close(ep);
	TRY("bind vfio-pci", ep_bind_vfio(ep, o->bdf));
	diag("after binding vfio-pci: driver '%s', iommu_group %d",
	     pci_driver(&ep->pci, drv, sizeof(drv)), ep->pci.group);
	EXPECT(ep->pci.group >= 0, "%s has no iommu_group link with vfio-pci bound: the SMMU "
	       "driver did not probe the device", ep->pci.bdf);
	return R_PASS;
}

static enum result own_iommu_group(const struct opts *o)
{
	struct ep ep;
	char path[300], type[64] = "?";
	DIR *d;
	struct dirent *de;
	int n = 0;
	bool self = false;
	enum result res;

	if ((res = bind_for_probe(&ep, o)) != R_PASS)
		return res;
	snprintf(path, sizeof(path), "/sys/kernel/iommu_groups/%d/devices", ep.pci.group);
	d = opendir(path);
	EXPECT(d, "cannot open %s", path);
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		n++;
		if (!strcmp(de->d_name, ep.pci.bdf))
			self = true;
		else
			diag("group %d also holds %s", ep.pci.group, de->d_name);
	}
	closedir(d);
	snprintf(path, sizeof(path), "/sys/kernel/iommu_groups/%d/type", ep.pci.group);
	sysfs_read(path, type, sizeof(type));
	diag("iommu group %d: %d device(s), type %s", ep.pci.group, n, type);
	EXPECT(self, "%s is not listed in its own group %d", ep.pci.bdf, ep.pci.group);
	EXPECT(n == 1, "group %d holds %d devices, expected only %s", ep.pci.group, n, ep.pci.bdf);
	ep_close(&ep);
	return R_PASS;
}

static enum result ats_enabled_default(const struct opts *o)
{
	struct ep ep;
	char path[300], type[64] = "";
	bool on;
	enum result res;

	if ((res = bind_for_probe(&ep, o)) != R_PASS)
		return res;
	snprintf(path, sizeof(path), "/sys/kernel/iommu_groups/%d/type", ep.pci.group);
	TRY("read group type", sysfs_read(path, type, sizeof(type)));
	/* Only a translating default domain gets ATS; identity and blocked turn it off. */
	if (strncmp(type, "DMA", 3))
		return skip("group %d default domain is '%s', not a translating DMA domain",
			    ep.pci.group, type);
	TRY("read ATS Control", pci_ats_enabled(&ep.pci, &on));
	diag("vfio-pci bound (device not opened), group %d type %s: ATS Control.Enable %d",
	     ep.pci.group, type, on);
	EXPECT(on, "ATS Control (config 0x%x) Enable bit 15 is clear with the default %s domain "
	       "attached", ep.pci.ats_cap + PCI_ATS_CTRL, type);
	ep_close(&ep);
	return R_PASS;
}

static enum result pasid_enabled(const struct opts *o)
{
	struct ep ep;
	uint16_t cap;
	bool on;
	enum result res;

	if ((res = bind_for_probe(&ep, o)) != R_PASS)
		return res;
	EXPECT(ep.pci.pasid_cap, "%s has no PASID capability", ep.pci.bdf);
	TRY("read PASID Capability",
	    pci_cfg_read16(&ep.pci, ep.pci.pasid_cap + PCI_PASID_CAP, &cap));
	TRY("read PASID Control", pci_pasid_enabled(&ep.pci, &on));
	diag("PASID Capability 0x%04x (max PASID width %u), Control.Enable %d", cap,
	     (cap >> 8) & 0x1f, on);
	EXPECT(on, "PASID Control (config 0x%x) Enable bit 0 is clear after the SMMU driver "
	       "probed the device (it enables PASID when IDR1.SSIDSIZE > 0 and the device has "
	       "the capability)", ep.pci.pasid_cap + PCI_PASID_CTRL);
	ep_close(&ep);
	return R_PASS;
}

static enum result ats_enabled_iommufd(const struct opts *o)
{
	struct ep ep;
	struct domain dom;
	uint32_t caps;
	bool blocked_on, on;

	TRY("open endpoint through VFIO cdev + iommufd", ep_open_vfio(&ep, o->bdf));
	caps = ep_rd32(&ep, COSIM_EP_CAPS);
	diag("CAPS 0x%x ATC_SIZE %u", caps, ep_rd32(&ep, COSIM_EP_ATC_SIZE));
	EXPECT(caps & COSIM_EP_CAPS_ATS, "endpoint CAPS 0x%x lacks ATS (bit 2)", caps);
	TRY("read ATS Control while blocked", pci_ats_enabled(&ep.pci, &blocked_on));
	diag("ATS Control.Enable after VFIO_DEVICE_BIND_IOMMUFD (blocked domain): %d",
	     blocked_on);
	TRY("create paging domain", ep_domain(&ep, &dom, IOVA_BASE, o->size, 0));
	TRY("attach paging HWPT", ep_attach_marked(&ep, dom.hwpt, 0, "probe: attach"));
	TRY("read ATS Control after attach", pci_ats_enabled(&ep.pci, &on));
	diag("ATS Control.Enable after VFIO_DEVICE_ATTACH_IOMMUFD_PT (hwpt %u): %d", dom.hwpt,
	     on);
	EXPECT(on, "ATS Control (config 0x%x) Enable is clear with iommufd paging HWPT %u "
	       "attached", ep.pci.ats_cap + PCI_ATS_CTRL, dom.hwpt);
	ep_close(&ep);
	return R_PASS;
}

static const struct tcase cases[] = {
	TCASE(smmu_probed, "arm-smmu-v3 registered an smmu3 IOMMU in /sys/class/iommu"),
	TCASE(endpoint_found, "the endpoint is on the PCI bus with ATS and PASID caps"),
	TCASE(own_iommu_group,
	      "with vfio-pci bound the endpoint is alone in its IOMMU group"),
	TCASE(ats_enabled_default,
	      "ATS Control.Enable set with the default DMA domain (vfio-pci bound, not opened)"),
	TCASE(pasid_enabled,
	      "PASID Control.Enable set by the SMMU driver's probe (vfio-pci bound)"),
	TCASE(ats_enabled_iommufd,
	      "ATS Control.Enable set with an iommufd paging HWPT attached via VFIO"),
};

COSIM_SUITE(cosim_probe, cases,
	    .summary = "SMMU probe, IOMMU group, and ATS/PASID enablement of cosim-pcie-ep.",
	    .params = "--size --bdf --only",
	    .defaults = { .count = 1, .settle = 8, .timeout_ms = 5000, .rate = 1, .stride = 64,
			  .pasid = 1, .case_timeout_s = 60, .size = 0x10000, .ats = true });
