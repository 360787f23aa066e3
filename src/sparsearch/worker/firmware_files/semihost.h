/*
 * Semihosting: the program talks to the host through the debugger or emulator (QEMU with
 * -semihosting-config enable=on). Text goes to the host's standard output, the exit status
 * becomes QEMU's. No libc: the integer formatter is a few lines, newlib's printf is kilobytes.
 *
 * On a board without a debugger attached, a semihosting call stops the core: these helpers
 * are for QEMU and the debugger, not for production firmware.
 */
#ifndef SEMIHOST_H
#define SEMIHOST_H

#include <stdint.h>

/* Write text (no newline added). */
void sh_write(const char *text);

/* Write a signed decimal integer. */
void sh_write_int(int32_t value);

/* Write text and a newline. */
void sh_put_line(const char *text);

/* End the program: QEMU exits with status (0..255). */
void sh_exit(int status) __attribute__((noreturn));

#endif /* SEMIHOST_H */
