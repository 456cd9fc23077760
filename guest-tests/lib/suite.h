/* SPDX-License-Identifier: MIT */
/*
 * A test binary (suite.c): its case table, the numeric parameters every binary shares, and
 * COSIM_SUITE, which defines main() from them. Options are parsed here; the cases run on
 * the TAP harness (tap.h).
 */
#ifndef COSIM_SUITE_H
#define COSIM_SUITE_H

#include <stdbool.h>
#include <stdint.h>

#include "tap.h"

/* Buffer sizes and --size are whole pages. */
#define PAGE_SZ 4096ULL

/* Numeric parameters shared by every binary; each binary documents the ones it reads. */
struct opts {
	unsigned count;      /* domain switches / unmaps per case */
	unsigned settle;     /* generator records to wait for after a switch before checking */
	unsigned timeout_ms; /* longest wait for the generator to make that progress */
	unsigned rate;       /* TG_RATE: records per model poll */
	unsigned stride;     /* TG_STRIDE: bytes between records */
	unsigned pasid;      /* PASID used by PASID-tagged traffic */
	unsigned case_timeout_s; /* a case running longer than this is killed and fails */
	uint64_t size;       /* bytes per DMA buffer / generator window */
	bool ats;            /* run the ATS variants (--no-ats clears it) */
	bool verbose;
	const char *bdf;     /* endpoint address; default: found by vendor/device ID */
	const char *only;    /* run only the case with this name */
};

struct tcase {
	const char *name;
	tap_case_fn fn;
	const char *what; /* one line for --help */
};

/* A case table entry whose TAP name is the function's name. */
#define TCASE(fn, what) { #fn, fn, what }

struct suite {
	const char *prog;
	const char *summary;   /* what the binary checks, for --help */
	const char *params;    /* which options it reads, for --help */
	const struct tcase *cases;
	int ncases;
	struct opts defaults;
};

int suite_main(const struct suite *s, int argc, char **argv);

/*
 * main() for a binary named prog running the cases of the array `cases`; the rest are
 * struct suite initialisers: .summary, .params and .defaults.
 *   COSIM_SUITE(cosim_dma, cases, .summary = "...", .params = "...", .defaults = { ... });
 */
#define COSIM_SUITE(prog_, cases_, ...)                                               \
	int main(int argc, char **argv)                                               \
	{                                                                             \
		static const struct suite s = {                                       \
			.prog = #prog_,                                               \
			.cases = cases_,                                              \
			.ncases = (int)(sizeof(cases_) / sizeof((cases_)[0])),        \
			__VA_ARGS__                                                   \
		};                                                                    \
		return suite_main(&s, argc, argv);                                    \
	}

#endif /* COSIM_SUITE_H */
