// SPDX-License-Identifier: MIT
/* The guest-kmod test driver: load, bind, give back, its cases and their result lines. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kmod.h"
#include "sysfs.h"
#include "tap.h"

#define KMOD_SYSFS "/sys/module/" KMOD_NAME
#define KMOD_DEBUGFS "/sys/kernel/debug/" KMOD_NAME

bool kmod_present(void)
{
	return path_exists(KMOD_PATH);
}

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
	if (sysfs_write(path, strcmp(override, KMOD_NO_OVERRIDE) ? override : "\n"))
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

int kmod_take(struct ep *ep, struct kmod_saved *sv)
{
	char path[300];
	int rc;

	pci_driver(&ep->pci, sv->driver, sizeof(sv->driver));
	snprintf(path, sizeof(path), "%s/driver_override", ep->pci.sysdir);
	if (sysfs_read(path, sv->override, sizeof(sv->override)))
		return EP_ERR;
	diag("endpoint %s: driver '%s', driver_override '%s'", ep->pci.bdf, sv->driver,
	     sv->override);
	if ((rc = load_module()) || (rc = pci_unbind_driver(&ep->pci)) || (rc = kmod_bind(ep)))
		return rc;
	return EP_OK;
}

int kmod_give_back(struct ep *ep, const struct kmod_saved *sv)
{
	int rc = pci_unbind_driver(&ep->pci);

	if (!rc)
		rc = unload_module();
	if (!rc)
		rc = bind_override(ep, sv->override, sv->driver);
	return rc;
}

int kmod_unbind(struct ep *ep)
{
	return pci_unbind_driver(&ep->pci);
}

int kmod_bind(struct ep *ep)
{
	int rc = bind_override(ep, KMOD_NAME, KMOD_NAME);

	/* With DT the group exists from the first driver bind. */
	if (!rc)
		pci_read_group(&ep->pci);
	return rc;
}

int kmod_param(const char *name, unsigned val)
{
	char path[200], v[24];

	snprintf(path, sizeof(path), KMOD_SYSFS "/parameters/%s", name);
	if (!path_exists(path))
		return ep_set_err(EP_ERR, "the module has no parameter %s (no %s)", name, path);
	snprintf(v, sizeof(v), "%u", val);
	return sysfs_write(path, v);
}

int kmod_run_case(struct ep *ep, const char *name, char *line, size_t len)
{
	char path[400];

	snprintf(path, sizeof(path), KMOD_DEBUGFS "/%s/%s", ep->pci.bdf, name);
	if (!path_exists(path))
		return ep_set_err(EP_ERR, "the module has no case %s (no %s)", name, path);
	return sysfs_read(path, line, len);
}

bool kmod_field(const char *line, const char *key, char *val, size_t len)
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

uint64_t kmod_num(const char *line, const char *key, bool *ok)
{
	char v[40];
	char *end;
	uint64_t x;

	if (!kmod_field(line, key, v, sizeof(v))) {
		*ok = false;
		return 0;
	}
	errno = 0;
	x = strtoull(v, &end, 0);
	if (errno || *end || end == v)
		*ok = false;
	return x;
}

int kmod_open(struct ep *ep, const char *name, int flags)
{
	char path[400];
	int fd;

	snprintf(path, sizeof(path), KMOD_DEBUGFS "/%s/%s", ep->pci.bdf, name);
	if (!path_exists(path))
		return ep_set_err(EP_ERR, "the module has no file %s (no %s)", name, path), -1;
	fd = open(path, flags | O_CLOEXEC);
	if (fd < 0)
		return ep_set_err(EP_ERR, "open %s: %s (errno %d)", path, strerror(errno), errno),
		       -1;
	return fd;
}

static int set_type(struct kmod_restore *r, const char *type)
{
	char now[32] = "";

	if (sysfs_write(r->type_path, type))
		return EP_ERR;
	if (sysfs_read(r->type_path, now, sizeof(now)))
		return EP_ERR;
	/* "auto" reads back as what the kernel chose. */
	if (strcmp(type, "auto") && strcmp(now, type))
		return ep_set_err(EP_ERR, "group type reads '%s' after writing '%s'", now, type);
	return EP_OK;
}

void kmod_restore(void *p)
{
	struct kmod_restore *r = p;

	if (*r->type) {
		/* The type changes with no driver bound. */
		int rc = kmod_unbind(&r->ep);

		if (!rc)
			rc = set_type(r, r->type);
		if (rc)
			diag("restoring group type '%s' failed: %s", r->type, ep_err);
		else
			*r->type = '\0';
	}
	if (r->taken && kmod_give_back(&r->ep, &r->sv))
		diag("giving the device back to '%s' failed: %s",
		     *r->sv.driver ? r->sv.driver : "(none)", ep_err);
	else
		r->taken = false;
}

/* Unbind the module, write "identity" to the group's type (noting the old one), rebind. */
static int go_identity(struct kmod_restore *r)
{
	char orig[32] = "";
	int rc;

	snprintf(r->type_path, sizeof(r->type_path), "/sys/kernel/iommu_groups/%d/type",
		 r->ep.pci.group);
	if (r->ep.pci.group < 0)
		return ep_set_err(EP_ERR, "%s has no IOMMU group", r->ep.pci.bdf);
	if (!path_exists(r->type_path))
		return ep_set_err(EP_UNSUP, "iommu group type switching (no %s)", r->type_path);
	if ((rc = sysfs_read(r->type_path, orig, sizeof(orig))))
		return rc;
	if ((rc = kmod_unbind(&r->ep)))
		return rc;
	/* From here the hook puts the type back, also when the write below fails half way. */
	if (strcmp(orig, "DMA") && strcmp(orig, "DMA-FQ") && strcmp(orig, "identity"))
		snprintf(orig, sizeof(orig), "auto");
	snprintf(r->type, sizeof(r->type), "%s", orig);
	if ((rc = set_type(r, "identity")) || (rc = kmod_bind(&r->ep)))
		return rc;
	diag("group %d type '%s' -> 'identity' for the case", r->ep.pci.group, orig);
	return EP_OK;
}

int kmod_setup(struct kmod_restore *r, const char *bdf, bool identity)
{
	int rc;

	memset(r, 0, sizeof(*r));
	snprintf(r->sv.override, sizeof(r->sv.override), KMOD_NO_OVERRIDE);
	if ((rc = ep_find(&r->ep, bdf)))
		return rc;
	if (tap_on_teardown(kmod_restore, r))
		return ep_set_err(EP_ERR, "cannot register the device's give-back");
	r->taken = true;
	if ((rc = kmod_take(&r->ep, &r->sv)))
		return rc;
	if (identity && (rc = go_identity(r)))
		return rc;
	return EP_OK;
}

/* Parse line into s; false when a number is missing (the word and name are always set). */
static bool switch_parse(const char *line, struct kmod_switch *s)
{
	bool ok = true;
	size_t skip;

	memset(s, 0, sizeof(*s));
	sscanf(line, "%15s %63s", s->word, s->name);
	skip = strlen(s->word) + strlen(s->name) + 2;
	s->rest = strlen(line) >= skip ? line + skip : "";
	kmod_field(line, "default", s->def, sizeof(s->def));
	s->switches = kmod_num(line, "switches", &ok);
	s->landed = kmod_num(line, "landed", &ok);
	s->dropped = kmod_num(line, "dropped", &ok);
	s->during = kmod_num(line, "during_refused", &ok);
	s->during_ats = kmod_num(line, "during_ats_err", &ok);
	s->ats_req = kmod_num(line, "ats_req", &ok);
	s->atc_hit = kmod_num(line, "atc_hit", &ok);
	s->ats_default = (int64_t)kmod_num(line, "ats_default", &ok);
	s->ats_paging = (int64_t)kmod_num(line, "ats_paging", &ok);
	return ok;
}

enum result kmod_switch_judge(const char *line, const char *name, unsigned count,
			      bool identity, struct kmod_switch *s)
{
	bool ok = switch_parse(line, s);

	if (!strcmp(s->word, "unsupported"))
		return unsupported("%s", s->rest);
	EXPECT(!strcmp(s->name, name), "the module answered for case '%s', expected '%s'",
	       s->name, name);
	EXPECT(!strcmp(s->word, "ok"), "the module reports a failure: %s", line);
	EXPECT(ok, "cannot parse the numbers in: %s", line);
	EXPECT(s->switches == count, "the module ran %llu switches, asked for %u",
	       (unsigned long long)s->switches, count);
	if (identity)
		EXPECT(!strcmp(s->def, "identity"), "the default domain was '%s', not identity",
		       s->def);
	else
		EXPECT(!strcmp(s->def, "DMA") || !strcmp(s->def, "DMA-FQ"),
		       "the default domain was '%s', not a DMA domain", s->def);
	return R_PASS;
}
