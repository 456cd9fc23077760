// SPDX-License-Identifier: MIT
/*
 * TAP 13 harness, kselftest style. Every case runs in a child process so that whatever it
 * leaves open (VFIO device, iommufd objects, a running generator, a crash on MMIO) is torn
 * down by the kernel before the next case starts.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cosim.h"

#define UNSUPPORTED_PREFIX "not supported by this kernel: "

char ep_err[512];

/* Shared with the parent: the child's verdict and the SKIP reason. */
struct verdict {
	int result;
	char reason[400];
};
static struct verdict *verdict;
static bool verbose;

uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static void vline(const char *fmt, va_list ap)
{
	char buf[1024];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	/* Keep TAP well-formed: every diagnostic line starts with "# ". */
	for (char *line = buf, *nl; line; line = nl) {
		nl = strchr(line, '\n');
		if (nl)
			*nl++ = '\0';
		if (*line || !nl)
			printf("# %s\n", line);
	}
	fflush(stdout);
}

void diag(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vline(fmt, ap);
	va_end(ap);
}

void vdiag(const char *fmt, ...)
{
	va_list ap;

	if (!verbose)
		return;
	va_start(ap, fmt);
	vline(fmt, ap);
	va_end(ap);
}

enum result fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vline(fmt, ap);
	va_end(ap);
	return R_FAIL;
}

static enum result set_reason(enum result r, const char *prefix, const char *fmt, va_list ap)
{
	if (verdict) {
		size_t n = strlen(prefix);

		snprintf(verdict->reason, sizeof(verdict->reason), "%s", prefix);
		vsnprintf(verdict->reason + n, sizeof(verdict->reason) - n, fmt, ap);
		/* The reason sits on the result line: it must stay one line. */
		for (char *p = verdict->reason; *p; p++)
			if (*p == '\n' || *p == '#')
				*p = ' ';
	}
	return r;
}

enum result unsupported(const char *fmt, ...)
{
	va_list ap;
	enum result r;

	va_start(ap, fmt);
	r = set_reason(R_UNSUP, UNSUPPORTED_PREFIX, fmt, ap);
	va_end(ap);
	return r;
}

enum result skip(const char *fmt, ...)
{
	va_list ap;
	enum result r;

	va_start(ap, fmt);
	r = set_reason(R_SKIP, "", fmt, ap);
	va_end(ap);
	return r;
}

int ep_set_err(int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ep_err, sizeof(ep_err), fmt, ap);
	va_end(ap);
	return rc;
}

enum result lib_result(int rc, const char *step)
{
	if (rc == EP_UNSUP)
		return unsupported("%s (step: %s)", ep_err, step);
	return fail("step '%s' failed: %s", step, ep_err);
}

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
		"\"ok N - name # SKIP " UNSUPPORTED_PREFIX "<what>\".\n",
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

static enum result run_case(const struct tcase *t, const struct opts *o)
{
	pid_t pid;
	int status;

	memset(verdict, 0, sizeof(*verdict));
	verdict->result = -1;
	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		diag("fork: %s", strerror(errno));
		return R_FAIL;
	}
	if (pid == 0) {
		alarm(o->case_timeout_s);
		verdict->result = t->fn(o);
		ep_case_cleanup();
		fflush(stdout);
		_exit(0);
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			diag("waitpid: %s", strerror(errno));
			return R_FAIL;
		}
	}
	if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);

		if (sig == SIGALRM)
			diag("case killed after --case-timeout %u s", o->case_timeout_s);
		else
			diag("case died from signal %d (%s)", sig, strsignal(sig));
		return R_FAIL;
	}
	if (verdict->result < R_PASS || verdict->result > R_UNSUP) {
		diag("case exited (status %d) without a verdict", WEXITSTATUS(status));
		return R_FAIL;
	}
	return (enum result)verdict->result;
}

int suite_main(const struct suite *s, int argc, char **argv)
{
	struct opts o;
	int rc, planned = 0, failed = 0, n = 0;

	rc = parse_opts(s, argc, argv, &o);
	if (rc)
		return rc == 1 ? 0 : rc;
	verbose = o.verbose;
	verdict = mmap(NULL, sizeof(*verdict), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		       -1, 0);
	if (verdict == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	for (int i = 0; i < s->ncases; i++)
		if (!o.only || !strcmp(o.only, s->cases[i].name))
			planned++;
	if (!planned) {
		fprintf(stderr, "no case named '%s'\n", o.only);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("TAP version 13\n1..%d\n", planned);
	for (int i = 0; i < s->ncases; i++) {
		const struct tcase *t = &s->cases[i];
		enum result r;

		if (o.only && strcmp(o.only, t->name))
			continue;
		n++;
		printf("# %s: %s\n", t->name, t->what);
		r = run_case(t, &o);
		switch (r) {
		case R_PASS:
			printf("ok %d - %s\n", n, t->name);
			break;
		case R_SKIP:
		case R_UNSUP:
			printf("ok %d - %s # SKIP %s\n", n, t->name, verdict->reason);
			break;
		default:
			failed++;
			printf("not ok %d - %s\n", n, t->name);
			break;
		}
		fflush(stdout);
	}
	printf("# %s: %d of %d failed\n", s->prog, failed, planned);
	return failed ? 1 : 0;
}
