/* SPDX-License-Identifier: MIT */
/*
 * The guest-kmod test driver, cosim_ep_dma.ko (kmod.c): loaded from /lib/cosim, bound to the
 * endpoint with driver_override (it has no ID table, so it never takes the device by itself)
 * and the device given back to the driver it had; its cases, each a debugfs file whose read
 * runs the case and returns one result line; the key=value fields of that line.
 */
#ifndef COSIM_KMOD_H
#define COSIM_KMOD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "ep.h"

#define KMOD_NAME "cosim_ep_dma"
#define KMOD_PATH "/lib/cosim/" KMOD_NAME ".ko"
/* sysfs driver_override reads this when no override is set. */
#define KMOD_NO_OVERRIDE "(null)"

/* The device as the test found it, to give it back to the later areas unchanged. */
struct kmod_saved {
	char driver[64];
	char override[64];
};

/* Only the kernels built from source carry the module (scripts/kmod.sh). */
bool kmod_present(void);
/* Note the device's driver and override in sv, load the module, bind it to the device. */
int kmod_take(struct ep *ep, struct kmod_saved *sv);
/* Unbind the module's driver, unload it, rebind the driver the device had. */
int kmod_give_back(struct ep *ep, const struct kmod_saved *sv);
/* Unbind / bind the module's driver alone (the group's type changes with no driver bound). */
int kmod_unbind(struct ep *ep);
int kmod_bind(struct ep *ep);
/* Set a module parameter (/sys/module/cosim_ep_dma/parameters/<name>). */
int kmod_param(const char *name, unsigned val);
/*
 * A case's hold on the device: what kmod_restore() puts back (registered as a teardown hook
 * by kmod_setup(), so it runs also when the case is killed; static storage, since the hook
 * runs after the case's stack is gone).
 */
struct kmod_restore {
	struct ep ep;
	struct kmod_saved sv;
	bool taken;
	char type_path[128];
	char type[32];   /* the group's type to put back; "" when the case did not change it */
};
/* Find the endpoint, register the give-back, bind the module; with identity, make the
 * group's default domain identity first (unbind, write the type, rebind). */
int kmod_setup(struct kmod_restore *r, const char *bdf, bool identity);
/* The teardown hook: the group type back, the device back to the driver it had. */
void kmod_restore(void *r);
/* Open one of the module's debugfs files for the device (fd, or -1 with ep_err set). */
int kmod_open(struct ep *ep, const char *name, int flags);
/* Run the case: read its debugfs file into line. */
int kmod_run_case(struct ep *ep, const char *name, char *line, size_t len);

/* A kswitch-style result line ("ok <case> switches=... default=... ats_default=..."), as
 * the module's switch cases print it (guest-kmod/cosim_ep_dma.c, kswitch_line()). */
struct kmod_switch {
	char word[16];           /* ok | fail | unsupported */
	char name[64];           /* the case the module answered for */
	char def[32];            /* the default domain's type */
	const char *rest;        /* the line after "<word> <name> " (for "unsupported") */
	uint64_t switches, landed, dropped, during, during_ats, ats_req, atc_hit;
	int64_t ats_default, ats_paging;
};
/* What every switch case's line must show: the module answered for `name` with "ok", the
 * numbers parse, it ran `count` switches each way from the default domain asked for (identity,
 * else DMA). R_PASS with s filled, or the case's result (unsupported, fail). */
enum result kmod_switch_judge(const char *line, const char *name, unsigned count,
			      bool identity, struct kmod_switch *s);

/* The value of `key=` in a result line, copied into val; false when absent. */
bool kmod_field(const char *line, const char *key, char *val, size_t len);
/* The number (any C base) of `key=`; *ok cleared when absent or not a number. */
uint64_t kmod_num(const char *line, const char *key, bool *ok);

#endif /* COSIM_KMOD_H */
