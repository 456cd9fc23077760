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
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/pci_regs.h>

#include "cosim.h"

#define KMOD_NAME "cosim_ep_dma"
#define KMOD_PATH "/lib/cosim/" KMOD_NAME ".ko"
#define KMOD_SYSFS "/sys/module/" KMOD_NAME
#define KMOD_DEBUGFS "/sys/kernel/debug/" KMOD_NAME
/* sysfs driver_override reads this when no override is set. */
#define NO_OVERRIDE "(null)"

/* The device as the test found it, to give it back to the later areas unchanged. */
struct saved {
	char driver[64];
	char override[64];
};

static int load_module(void)
{
	int fd;

	if (path_exists(KMOD_SYSFS))
		return EP_OK;
	if (!path_exists("/proc/modules"))
		return ep_set_err(EP_UNSUP, "loadable modules (no /proc/modules: CONFIG_MODULES)");
	fd = open(KMOD_PATH, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ep_set_err(EP_ERR, "open %s: %s (errno %d)", KMOD_PATH, strerror(errno),
				  errno);
	if (syscall(SYS_finit_module, fd, "", 0)) {
		int e = errno;

		close(fd);
		return ep_set_err(EP_ERR, "finit_module(%s): %s (errno %d)", KMOD_PATH,
				  strerror(e), e);
	}
	close(fd);
	return EP_OK;
}

static int unload_module(void)
{
	if (!path_exists(KMOD_SYSFS))
		return EP_OK;
	if (syscall(SYS_delete_module, KMOD_NAME, O_NONBLOCK))
		return ep_set_err(EP_ERR, "delete_module(%s): %s (errno %d)", KMOD_NAME,
				  strerror(errno), errno);
	return EP_OK;
}

/* Bind driver `drv` ("" for none) through driver_override = `override`. */
static int bind_override(struct ep *ep, const char *override, const char *drv)
{
	char path[300], now[64];

	snprintf(path, sizeof(path), "%s/driver_override", ep->pci.sysdir);
	/* An empty write clears the override. */
	if (sysfs_write(path, strcmp(override, NO_OVERRIDE) ? override : "\n"))
		return EP_ERR;
	if (!*drv)
		return EP_OK;
	if (sysfs_write("/sys/bus/pci/drivers_probe", ep->pci.bdf))
		return EP_ERR;
	if (strcmp(pci_driver(&ep->pci, now, sizeof(now)), drv))
		return ep_set_err(EP_ERR, "%s bound to '%s' after drivers_probe, wanted %s",
				  ep->pci.bdf, now, drv);
	return EP_OK;
}

/* Load the module and bind it to the endpoint, after noting how the device was found. */
static int take_device(struct ep *ep, struct saved *sv)
{
	char path[300];
	int rc;

	pci_driver(&ep->pci, sv->driver, sizeof(sv->driver));
	snprintf(path, sizeof(path), "%s/driver_override", ep->pci.sysdir);
	if (sysfs_read(path, sv->override, sizeof(sv->override)))
		return EP_ERR;
	diag("endpoint %s: driver '%s', driver_override '%s'", ep->pci.bdf, sv->driver,
	     sv->override);
	if ((rc = load_module()) || (rc = pci_unbind_driver(&ep->pci)) ||
	    (rc = bind_override(ep, KMOD_NAME, KMOD_NAME)))
		return rc;
	return EP_OK;
}

/* Unbind the module's driver, unload it, rebind the driver the device had. */
static int give_back(struct ep *ep, const struct saved *sv)
{
	int rc = pci_unbind_driver(&ep->pci);

	if (!rc)
		rc = unload_module();
	if (!rc)
		rc = bind_override(ep, sv->override, sv->driver);
	return rc;
}

/* The value of `key=` in a result line, copied into val; false when absent. */
static bool field(const char *line, const char *key, char *val, size_t len)
{
	size_t klen = strlen(key);

	for (const char *p = line; (p = strstr(p, key)); p += klen) {
		if ((p == line || p[-1] == ' ') && p[klen] == '=') {
			size_t n = strcspn(p + klen + 1, " \n");

			snprintf(val, len, "%.*s", (int)(n < len ? n : len - 1), p + klen + 1);
			return true;
		}
	}
	return false;
}

static uint64_t hex_field(const char *line, const char *key, bool *ok)
{
	char v[40];
	char *end;
	uint64_t x;

	if (!field(line, key, v, sizeof(v))) {
		*ok = false;
		return 0;
	}
	errno = 0;
	x = strtoull(v, &end, 0);
	if (errno || *end || end == v)
		*ok = false;
	return x;
}

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
	field(line, "domain", dom, sizeof(dom));
	iova_src = hex_field(line, "iova_src", &ok);
	pa_src = hex_field(line, "pa_src", &ok);
	iova_dst = hex_field(line, "iova_dst", &ok);
	pa_dst = hex_field(line, "pa_dst", &ok);
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

		if (field(line, "ats_req", v, sizeof(v)))
			reqs = strtoull(v, NULL, 0);
		if (field(line, "atc_hit", v, sizeof(v)))
			hits = strtoull(v, NULL, 0);
		EXPECT(reqs + hits > 0, "ATS copy with no ATS request and no ATC hit: %s", line);
	}
	return R_PASS;
}

static enum result run_case(const struct opts *o, const char *name, bool ats)
{
	struct ep ep;
	struct saved sv = { "", NO_OVERRIDE };
	char path[400], type[64] = "?", line[1024] = "";
	enum result res;
	bool ats_on = false;
	int rc;

	if (ats && !o->ats)
		return skip("--no-ats");
	/* Only the kernels scripts/kernel.sh builds from source carry the module. */
	if (!path_exists(KMOD_PATH))
		return unsupported("no " KMOD_NAME " module built for it (no " KMOD_PATH ")");
	TRY("find endpoint", ep_find(&ep, o->bdf));
	rc = take_device(&ep, &sv);
	if (rc) {
		res = lib_result(rc, "bind " KMOD_NAME);
		goto out;
	}
	/* With DT the group exists from the first driver bind: read it now. */
	snprintf(path, sizeof(path), "%s/iommu_group/type", ep.pci.sysdir);
	sysfs_read(path, type, sizeof(type));
	pci_ats_enabled(&ep.pci, &ats_on);
	diag("bound to " KMOD_NAME ": iommu group type %s, ATS Control.Enable %d", type, ats_on);
	snprintf(path, sizeof(path), KMOD_DEBUGFS "/%s/%s", ep.pci.bdf, name);
	rc = sysfs_read(path, line, sizeof(line));
	if (rc) {
		res = lib_result(rc, "run the case (read its debugfs file)");
		goto out;
	}
	diag("%s", line);
	res = judge(name, line, ats);
out:
	/* The device goes back to its driver whatever the case found. */
	rc = give_back(&ep, &sv);
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
