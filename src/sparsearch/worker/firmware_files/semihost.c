/* Semihosting calls (Arm "Semihosting for AArch32 and AArch64", v2): see semihost.h. */
#include "semihost.h"

#include <stdint.h>

enum {
    SYS_OPEN = 0x01,
    SYS_WRITE = 0x05,
    SYS_EXIT_EXTENDED = 0x20, /* SYS_EXIT (0x18) cannot carry a status on 32-bit Arm */
    ADP_STOPPED_APPLICATION_EXIT = 0x20026,
    OPEN_MODE_W = 4 /* "w": ":tt" opened for writing is the host's standard output */
};

/* One semihosting call: operation in r0, argument block in r1, result in r0. */
static int32_t sh_call(int32_t op, const void *args)
{
    register int32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = args;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

/* volatile: otherwise the compiler calls libc's strlen, which is larger than this program. */
static uint32_t length(const volatile char *text)
{
    uint32_t n = 0;
    while (text[n] != '\0') {
        n++;
    }
    return n;
}

void sh_write(const char *text)
{
    static int32_t handle = -1;
    if (handle < 0) {
        const uint32_t open_args[3] = {(uint32_t)(uintptr_t)":tt", OPEN_MODE_W, 3};
        handle = sh_call(SYS_OPEN, open_args);
    }
    const uint32_t write_args[3] = {(uint32_t)handle, (uint32_t)(uintptr_t)text, length(text)};
    sh_call(SYS_WRITE, write_args);
}

void sh_write_int(int32_t value)
{
    char text[12]; /* "-2147483648" and the terminator */
    char *p = text + sizeof text - 1;
    /* Count in unsigned: -INT32_MIN does not fit an int32_t. */
    uint32_t magnitude = value < 0 ? 0u - (uint32_t)value : (uint32_t)value;
    *p = '\0';
    do {
        *--p = (char)('0' + magnitude % 10u);
        magnitude /= 10u;
    } while (magnitude != 0u);
    if (value < 0) {
        *--p = '-';
    }
    sh_write(p);
}

void sh_put_line(const char *text)
{
    sh_write(text);
    sh_write("\n");
}

void sh_exit(int status)
{
    const uint32_t args[2] = {ADP_STOPPED_APPLICATION_EXIT, (uint32_t)status};
    for (;;) {
        sh_call(SYS_EXIT_EXTENDED, args);
    }
}
