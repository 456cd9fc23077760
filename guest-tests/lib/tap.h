/* SPDX-License-Identifier: MIT */
/*
 * TAP 13 harness (tap.c), the bottom of the library: it runs cases, prints their results and
 * diagnostics, and runs the teardown hooks the case (or the library code it called)
 * registered. It knows nothing of PCI, VFIO or the endpoint; the options a case receives are
 * the suite's (suite.h), passed through untouched.
 */
#ifndef COSIM_TAP_H
#define COSIM_TAP_H

#include <stdbool.h>
#include <stdint.h>

enum result { R_PASS, R_FAIL, R_SKIP, R_UNSUP };

struct opts; /* the suite's options (suite.h); the harness only hands them to the case */
typedef enum result (*tap_case_fn)(const struct opts *o);

/* Start the TAP stream: header and plan. Nonzero when the harness cannot run cases. */
int tap_begin(int planned, bool verbose);
/* Run one case in a child process killed after timeout_s; print "# name: what", the case's
 * diagnostics and its "ok"/"not ok" line. */
enum result tap_run(const char *name, const char *what, tap_case_fn fn, const struct opts *o,
		    unsigned timeout_s);
/* Print the summary line; the number of failed cases. */
int tap_end(const char *prog);

/* Inside a case: diagnostics ("# ..."), then return one of these. */
void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void vdiag(const char *fmt, ...) __attribute__((format(printf, 1, 2))); /* only with -v */
enum result fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
enum result unsupported(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
enum result skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The reason a SKIP line carries when the kernel lacks a feature (the host classifies it). */
#define TAP_UNSUPPORTED_PREFIX "not supported by this kernel: "

#define EXPECT(cond, ...)                                                   \
	do {                                                                \
		if (!(cond))                                                \
			return fail(__VA_ARGS__);                           \
	} while (0)

/*
 * Teardown hooks: whatever a case leaves in a state the next case (or the trace analyser)
 * must not see, the code that set it up registers a hook to undo. The harness runs the
 * case's hooks in its process, last registered first, after the case returns (whatever it
 * returned) and when it is killed by its timeout or a fatal signal. A hook may print
 * diagnostics; it must not assume how far the case got.
 */
typedef void (*tap_teardown_fn)(void *arg);
/* Nonzero (and a diagnostic) when the table of hooks is full. */
int tap_on_teardown(tap_teardown_fn fn, void *arg);
/* Forget a hook whose work was done early (e.g. the device was closed). */
void tap_cancel_teardown(tap_teardown_fn fn, void *arg);

uint64_t now_ms(void);
void sleep_ms(unsigned ms);

#endif /* COSIM_TAP_H */
