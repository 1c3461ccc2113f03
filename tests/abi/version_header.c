// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * <xmem/version.h> as a C program sees it: the macros equal the version
 * meson was given (WANT_*, from tests/abi/meson.build) and XMEM_VERSION_NUMBER
 * orders versions. Exit 0 when they do, 1 (with what differed) otherwise.
 */
#include <xmem/version.h>

#include <stdio.h>
#include <string.h>

#if !defined(XMEM_VERSION_MAJOR) || !defined(XMEM_VERSION_MINOR) || \
	!defined(XMEM_VERSION_PATCH) || !defined(XMEM_SOVERSION)
#error "xmem/version.h lacks a macro"
#endif

#if XMEM_VERSION_NUMBER < 100
#error "XMEM_VERSION_NUMBER is not a number usable in #if"
#endif

int main(void)
{
	int bad = 0;

	if (XMEM_VERSION_MAJOR != WANT_MAJOR || XMEM_VERSION_MINOR != WANT_MINOR ||
	    XMEM_VERSION_PATCH != WANT_PATCH) {
		fprintf(stderr, "version.h: %d.%d.%d, meson: %d.%d.%d\n", XMEM_VERSION_MAJOR,
			XMEM_VERSION_MINOR, XMEM_VERSION_PATCH, WANT_MAJOR, WANT_MINOR, WANT_PATCH);
		bad = 1;
	}
	if (XMEM_VERSION_NUMBER != WANT_MAJOR * 10000 + WANT_MINOR * 100 + WANT_PATCH) {
		fprintf(stderr, "XMEM_VERSION_NUMBER %d is not major * 10000 + minor * 100 + patch\n",
			XMEM_VERSION_NUMBER);
		bad = 1;
	}
	if (strcmp(XMEM_VERSION_STRING, WANT_STRING) != 0 || XMEM_SOVERSION != WANT_SOVERSION) {
		fprintf(stderr, "XMEM_VERSION_STRING %s (want %s), XMEM_SOVERSION %d (want %d)\n",
			XMEM_VERSION_STRING, WANT_STRING, XMEM_SOVERSION, WANT_SOVERSION);
		bad = 1;
	}
	printf("xmem/version.h: %s, XMEM_VERSION_NUMBER %d, soname libxmem.so.%d\n", XMEM_VERSION_STRING,
	       XMEM_VERSION_NUMBER, XMEM_SOVERSION);
	return bad;
}
