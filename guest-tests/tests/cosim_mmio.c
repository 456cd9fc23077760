// SPDX-License-Identifier: MIT
/*
 * Area mmio: the MMIO round trip vCPU -> QEMU -> model -> vCPU, timed in the guest. A loop of
 * --count back-to-back 32-bit reads of the endpoint's BAR0 ID register (read-only, no side
 * effect: COSIM_EP_ID), BAR0 mapped through sysfs resource0 with no driver bound, between a
 * test-begin and a test-end marker (label "mmio read", value --count) so the model's trace
 * shows exactly those reads. Two baselines without the model, timed the same way: a dword of
 * the endpoint's config space read through sysfs `config` (the kernel's ECAM access, a vCPU
 * exit that QEMU's own PCIe host bridge serves), and getppid() (a syscall, no device: what the
 * config read spends in the kernel besides its exit).
 *
 * Reads are timed in batches of MMIO_BATCH with CLOCK_MONOTONIC (the vDSO: no exit); each
 * batch gives one per-read figure. Every case prints one machine-readable line (bench/run.py
 * parses it):
 *   # mmio-result target=<case> reads=N batch=B batches=K total_ns=T mean_ns=M min_ns=..
 *     median_ns=.. p90_ns=.. max_ns=.. wrong=W
 * (one line; min..max over the batches' per-read ns). A case fails only when a read returned
 * another value than it must (wrong != 0) or the device is not there: there are no time
 * thresholds, so a slow machine passes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "cosim.h"

#define MMIO_BATCH 100u

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* One timed access: returns the value read (compared with the loop's expected value). */
typedef uint32_t (*read_fn)(void *ctx);

struct loop {
	const char *target;
	read_fn rd;
	void *ctx;
	uint32_t want;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v[0..n-1]. */
static uint64_t pct(const uint64_t *v, unsigned n, unsigned p)
{
	unsigned rank = (n * p + 99) / 100;

	return v[rank ? rank - 1 : 0];
}

static enum result timed_loop(const struct loop *l, unsigned count)
{
	unsigned batches = (count + MMIO_BATCH - 1) / MMIO_BATCH, wrong = 0, done = 0;
	uint64_t *per_read = calloc(batches ? batches : 1, sizeof(*per_read)), total = 0;
	uint32_t first_wrong = 0;

	EXPECT(count > 0, "--count must be at least 1");
	EXPECT(per_read, "out of memory for %u batch timings", batches);
	for (unsigned b = 0; b < batches; b++) {
		unsigned n = count - done < MMIO_BATCH ? count - done : MMIO_BATCH;
		uint64_t t0 = now_ns(), dt;

		for (unsigned i = 0; i < n; i++) {
			uint32_t v = l->rd(l->ctx);

			if (v != l->want && !wrong++)
				first_wrong = v;
		}
		dt = now_ns() - t0;
		total += dt;
		per_read[b] = dt / n;
		done += n;
	}
	qsort(per_read, batches, sizeof(*per_read), cmp_u64);
	diag("mmio-result target=%s reads=%u batch=%u batches=%u total_ns=%llu mean_ns=%llu "
	     "min_ns=%llu median_ns=%llu p90_ns=%llu max_ns=%llu wrong=%u", l->target, done,
	     MMIO_BATCH, batches, (unsigned long long)total, (unsigned long long)(total / done),
	     (unsigned long long)per_read[0], (unsigned long long)pct(per_read, batches, 50),
	     (unsigned long long)pct(per_read, batches, 90),
	     (unsigned long long)per_read[batches - 1], wrong);
	free(per_read);
	EXPECT(!wrong, "%u of %u reads returned something else than 0x%08x (first: 0x%08x)",
	       wrong, done, l->want, first_wrong);
	return R_PASS;
}

static uint32_t rd_bar(void *ctx)
{
	return ep_rd32(ctx, COSIM_EP_ID);
}

static enum result ep_bar_read(const struct opts *o)
{
	struct ep ep;
	struct loop l = { "ep_bar_read", rd_bar, &ep, COSIM_EP_ID_VALUE };
	enum result res;

	TRY("open endpoint through sysfs (no driver)", ep_open_sysfs(&ep, o->bdf));
	ep_marker(&ep, COSIM_EP_MARKER_TAG_TEST_BEGIN, o->count, "mmio read");
	res = timed_loop(&l, o->count);
	ep_marker(&ep, COSIM_EP_MARKER_TAG_TEST_END, o->count, "mmio read");
	ep_close(&ep);
	return res;
}

static uint32_t rd_cfg(void *ctx)
{
	struct pci_dev *d = ctx;
	uint32_t v = 0;

	if (pread(d->cfgfd, &v, sizeof(v), 0) != sizeof(v))
		return 0;
	return v;
}

static enum result cfg_read(const struct opts *o)
{
	struct ep ep;
	struct loop l = { "cfg_read", rd_cfg, &ep.pci,
			  COSIM_EP_VENDOR_ID | (uint32_t)COSIM_EP_DEVICE_ID << 16 };
	enum result res;

	TRY("find endpoint", ep_find(&ep, o->bdf));
	res = timed_loop(&l, o->count);
	ep_close(&ep);
	return res;
}

static uint32_t rd_getppid(void *ctx)
{
	return (uint32_t)syscall(SYS_getppid) == *(uint32_t *)ctx ? 0 : 1;
}

static enum result syscall_baseline(const struct opts *o)
{
	uint32_t ppid = (uint32_t)getppid();
	struct loop l = { "syscall_baseline", rd_getppid, &ppid, 0 };

	return timed_loop(&l, o->count);
}

static const struct tcase cases[] = {
	TCASE(ep_bar_read, "--count reads of the endpoint's BAR0 ID register (through the "
			   "model), between markers; every read returns the ID"),
	TCASE(cfg_read, "--count dword reads of its config space through sysfs (QEMU's own, no "
			"model); every read returns vendor:device"),
	TCASE(syscall_baseline, "--count getppid() calls: the syscall alone, no device"),
};

COSIM_SUITE(cosim_mmio, cases,
	    .summary = "MMIO round trip vCPU -> QEMU -> model -> vCPU, timed in the guest, "
		       "and two baselines without the model; one 'mmio-result' line per case.",
	    .params = "--count --bdf",
	    .defaults = { .count = 2000, .settle = 0, .timeout_ms = 10000, .rate = 1,
			  .stride = 64, .pasid = 1, .case_timeout_s = 300, .size = 0x10000,
			  .ats = true });
