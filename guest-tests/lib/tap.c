// SPDX-License-Identifier: MIT
/*
 * TAP 13 harness, kselftest style. Every case runs in a child process so that whatever it
 * leaves open (VFIO device, iommufd objects, a running generator, a crash on MMIO) is torn
 * down by the kernel before the next case starts; what must be undone visibly first (in the
 * trace, under markers) is undone by the teardown hooks the case registered.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tap.h"

/* Hooks registered by one case; more than a case opens devices and states to restore. */
#define MAX_TEARDOWN 16
/* Seconds the hooks get after a timeout or a fatal signal before the case dies anyway. */
#define TEARDOWN_GRACE_S 10

/* Shared with the parent: the child's verdict and the SKIP reason. */
struct verdict {
	int result;
	char reason[400];
};
static struct verdict *verdict;
static bool verbose;
static int planned, done, failed;

static struct {
	tap_teardown_fn fn;
	void *arg;
} teardown[MAX_TEARDOWN];
static int nteardown;

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
	r = set_reason(R_UNSUP, TAP_UNSUPPORTED_PREFIX, fmt, ap);
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

/* ------------------------------------------------------------------------------------- */
/* Teardown hooks */

int tap_on_teardown(tap_teardown_fn fn, void *arg)
{
	if (nteardown == MAX_TEARDOWN) {
		diag("harness: more than %d teardown hooks in one case", MAX_TEARDOWN);
		return -1;
	}
	teardown[nteardown].fn = fn;
	teardown[nteardown].arg = arg;
	nteardown++;
	return 0;
}

void tap_cancel_teardown(tap_teardown_fn fn, void *arg)
{
	for (int i = nteardown - 1; i >= 0; i--) {
		if (teardown[i].fn == fn && teardown[i].arg == arg) {
			memmove(&teardown[i], &teardown[i + 1],
				(size_t)(nteardown - i - 1) * sizeof(teardown[0]));
			nteardown--;
			return;
		}
	}
}

/* Last registered first; each hook is taken off before it runs, so none runs twice. */
static void run_teardown(void)
{
	while (nteardown > 0) {
		nteardown--;
		teardown[nteardown].fn(teardown[nteardown].arg);
	}
	fflush(stdout);
}

static const int fatal_signals[] = { SIGALRM, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT };

/*
 * A case killed by its timeout or a fault still gets its hooks run, then dies of the same
 * signal so the parent reports it as before. The handler is one-shot: a second fault, or a
 * hook still running when the grace alarm fires, ends the process.
 */
static void on_fatal(int sig)
{
	for (size_t i = 0; i < sizeof(fatal_signals) / sizeof(fatal_signals[0]); i++)
		signal(fatal_signals[i], SIG_DFL);
	alarm(TEARDOWN_GRACE_S);
	run_teardown();
	raise(sig);
}

static void catch_fatal(void)
{
	struct sigaction sa = { .sa_handler = on_fatal, .sa_flags = SA_RESETHAND | SA_NODEFER };

	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(fatal_signals) / sizeof(fatal_signals[0]); i++)
		sigaction(fatal_signals[i], &sa, NULL);
}

/* ------------------------------------------------------------------------------------- */
/* Running cases */

static enum result run_child(tap_case_fn fn, const struct opts *o, unsigned timeout_s)
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
		catch_fatal();
		alarm(timeout_s);
		verdict->result = fn(o);
		run_teardown();
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
			diag("case killed after --case-timeout %u s", timeout_s);
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

int tap_begin(int n, bool verb)
{
	verbose = verb;
	verdict = mmap(NULL, sizeof(*verdict), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		       -1, 0);
	if (verdict == MAP_FAILED) {
		verdict = NULL;
		perror("mmap");
		return 1;
	}
	planned = n;
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("TAP version 13\n1..%d\n", planned);
	return 0;
}

enum result tap_run(const char *name, const char *what, tap_case_fn fn, const struct opts *o,
		    unsigned timeout_s)
{
	enum result r;

	done++;
	printf("# %s: %s\n", name, what);
	r = run_child(fn, o, timeout_s);
	switch (r) {
	case R_PASS:
		printf("ok %d - %s\n", done, name);
		break;
	case R_SKIP:
	case R_UNSUP:
		printf("ok %d - %s # SKIP %s\n", done, name, verdict->reason);
		break;
	default:
		failed++;
		printf("not ok %d - %s\n", done, name);
		break;
	}
	fflush(stdout);
	return r;
}

int tap_end(const char *prog)
{
	printf("# %s: %d of %d failed\n", prog, failed, planned);
	return failed;
}
