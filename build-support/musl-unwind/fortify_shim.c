/* Debian's LLVM libunwind.a (libunwind-14-dev) is built against glibc with _FORTIFY_SOURCE and
 * so calls __fprintf_chk, which musl lacks. build-static.sh appends this object to a copy of it. */
#include <stdarg.h>
#include <stdio.h>
int __fprintf_chk(FILE *f, int flag, const char *fmt, ...) {
    (void)flag; va_list ap; va_start(ap, fmt); int r = vfprintf(f, fmt, ap); va_end(ap); return r;
}
