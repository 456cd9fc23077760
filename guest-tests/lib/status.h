/* SPDX-License-Identifier: MIT */
/*
 * How library calls report (status.c): EP_OK, EP_ERR (a failure) or EP_UNSUP (the kernel
 * lacks a feature), with the reason in ep_err, holding the numbers (errno, values) that prove
 * it. A case turns a non-EP_OK return into its result with TRY(). (Not err.h: that name is
 * glibc's, and lib/ comes first on the include path.)
 */
#ifndef COSIM_STATUS_H
#define COSIM_STATUS_H

#include "tap.h"

enum { EP_OK = 0, EP_ERR = -1, EP_UNSUP = -2 };
extern char ep_err[512];
int ep_set_err(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The status for a failed syscall's errno: EP_UNSUP when the kernel lacks the ioctl or the
 * operation (ENOTTY, EOPNOTSUPP), else EP_ERR. */
int errno_status(int e);
/* Turn a library failure into the case's result, naming the step. */
enum result lib_result(int rc, const char *step);

#define TRY(step, call)                                                     \
	do {                                                                \
		int rc_ = (call);                                           \
		if (rc_ != EP_OK)                                           \
			return lib_result(rc_, step);                       \
	} while (0)

#endif /* COSIM_STATUS_H */
