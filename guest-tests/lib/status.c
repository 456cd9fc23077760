// SPDX-License-Identifier: MIT
/* Library status codes and their reason (status.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "status.h"

char ep_err[512];

int ep_set_err(int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ep_err, sizeof(ep_err), fmt, ap);
	va_end(ap);
	return rc;
}

int errno_status(int e)
{
	return (e == ENOTTY || e == EOPNOTSUPP) ? EP_UNSUP : EP_ERR;
}

enum result lib_result(int rc, const char *step)
{
	if (rc == EP_UNSUP)
		return unsupported("%s (step: %s)", ep_err, step);
	return fail("step '%s' failed: %s", step, ep_err);
}
