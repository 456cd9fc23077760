// SPDX-License-Identifier: MIT
/* A test binary's command line (the shared options) and its run over the TAP harness. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cosim_ep.h"
#include "suite.h"

static void usage(const struct suite *s, FILE *f)
{
	const struct opts *d = &s->defaults;

	fprintf(f, "usage: %s [options]\n\n%s\n\ncases:\n", s->prog, s->summary);
	for (int i = 0; i < s->ncases; i++)
		fprintf(f, "  %-24s %s\n", s->cases[i].name, s->cases[i].what);
	fprintf(f,
		"\noptions (this binary reads: %s):\n"
		"  --count N        domain switches / unmaps per case (default %u)\n"
		"  --settle N       generator records to wait for after a switch (default %u)\n"
		"  --timeout-ms N   longest wait for that progress (default %u)\n"
		"  --rate N         TG_RATE, records per model poll (default %u)\n"
		"  --stride N       TG_STRIDE, bytes between records (default %u)\n"
		"  --size N         bytes per buffer / generator window (default %llu)\n"
		"  --pasid N        PASID for PASID-tagged traffic (default %u)\n"
		"  --case-timeout N seconds before a case is killed (default %u)\n"
		"  --no-ats         skip the ATS variants\n"
		"  --bdf BDF        endpoint address (default: first %04x:%04x)\n"
		"  --only NAME      run one case\n"
		"  -v, --verbose    more diagnostics\n"
		"  -h, --help       this text\n"
		"\nOutput is TAP 13. A case the kernel cannot run reports\n"
		"\"ok N - name # SKIP " TAP_UNSUPPORTED_PREFIX "<what>\".\n",
		s->params, d->count, d->settle, d->timeout_ms, d->rate, d->stride,
		(unsigned long long)d->size, d->pasid, d->case_timeout_s, COSIM_EP_VENDOR_ID,
		COSIM_EP_DEVICE_ID);
}

static bool parse_num(const char *arg, const char *name, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(arg, &end, 0);
	if (errno || *end || end == arg || v > max) {
		fprintf(stderr, "bad value for --%s: '%s'\n", name, arg);
		return false;
	}
	*out = v;
	return true;
}

static int parse_opts(const struct suite *s, int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "count", required_argument, NULL, 'c' },
		{ "settle", required_argument, NULL, 's' },
		{ "timeout-ms", required_argument, NULL, 't' },
		{ "rate", required_argument, NULL, 'r' },
		{ "stride", required_argument, NULL, 'S' },
		{ "size", required_argument, NULL, 'z' },
		{ "pasid", required_argument, NULL, 'p' },
		{ "case-timeout", required_argument, NULL, 'T' },
		{ "no-ats", no_argument, NULL, 'n' },
		{ "bdf", required_argument, NULL, 'b' },
		{ "only", required_argument, NULL, 'o' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	int c;
	uint64_t v;

	*o = s->defaults;
	while ((c = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (!parse_num(optarg, "count", 1000000, &v)) return 2;
			o->count = (unsigned)v;
			break;
		case 's':
			if (!parse_num(optarg, "settle", 1000000, &v)) return 2;
			o->settle = (unsigned)v;
			break;
		case 't':
			if (!parse_num(optarg, "timeout-ms", 3600000, &v)) return 2;
			o->timeout_ms = (unsigned)v;
			break;
		case 'r':
			if (!parse_num(optarg, "rate", 1 << 20, &v)) return 2;
			o->rate = (unsigned)v;
			break;
		case 'S':
			if (!parse_num(optarg, "stride", 1 << 20, &v)) return 2;
			if (v < COSIM_EP_TG_RECORD_SIZE || v % 8) {
				fprintf(stderr, "--stride must be >= %u and a multiple of 8\n",
					COSIM_EP_TG_RECORD_SIZE);
				return 2;
			}
			o->stride = (unsigned)v;
			break;
		case 'z':
			if (!parse_num(optarg, "size", 1ULL << 30, &v)) return 2;
			if (v < PAGE_SZ || v % PAGE_SZ) {
				fprintf(stderr, "--size must be a multiple of %llu\n", PAGE_SZ);
				return 2;
			}
			o->size = v;
			break;
		case 'p':
			if (!parse_num(optarg, "pasid", COSIM_EP_PASID_MASK, &v)) return 2;
			o->pasid = (unsigned)v;
			break;
		case 'T':
			if (!parse_num(optarg, "case-timeout", 86400, &v)) return 2;
			o->case_timeout_s = (unsigned)v;
			break;
		case 'n':
			o->ats = false;
			break;
		case 'b':
			o->bdf = optarg;
			break;
		case 'o':
			o->only = optarg;
			break;
		case 'v':
			o->verbose = true;
			break;
		case 'h':
			usage(s, stdout);
			return 1;
		default:
			usage(s, stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	return 0;
}

static bool selected(const struct opts *o, const struct tcase *t)
{
	return !o->only || !strcmp(o->only, t->name);
}

int suite_main(const struct suite *s, int argc, char **argv)
{
	struct opts o;
	int rc, planned = 0;

	rc = parse_opts(s, argc, argv, &o);
	if (rc)
		return rc == 1 ? 0 : rc;
	for (int i = 0; i < s->ncases; i++)
		if (selected(&o, &s->cases[i]))
			planned++;
	if (!planned) {
		fprintf(stderr, "no case named '%s'\n", o.only);
		return 2;
	}
	if (tap_begin(planned, o.verbose))
		return 1;
	for (int i = 0; i < s->ncases; i++)
		if (selected(&o, &s->cases[i]))
			tap_run(s->cases[i].name, s->cases[i].what, s->cases[i].fn, &o,
				o.case_timeout_s);
	return tap_end(s->prog) ? 1 : 0;
}
