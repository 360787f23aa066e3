/*
 * Startup for a Cortex-M core without CMSIS: the vector table, the reset handler (initialize
 * RAM, run main, exit with its return value through semihosting) and a fault handler.
 *
 * Only the 16 system vectors are present: nothing here enables an interrupt.
 */
#include <stdint.h>

#include "semihost.h"

/* Exit status of a program that faulted (main's own values should stay below it). */
#define FAULT_EXIT_STATUS 250

int main(void);

/* Defined by the linker script. */
extern uint32_t __data_load[], __data_start[], __data_end[];
extern uint32_t __bss_start[], __bss_end[];
extern uint32_t __stack_top[];

void Reset_Handler(void) __attribute__((noreturn));
void Fault_Handler(void) __attribute__((noreturn));

void Reset_Handler(void)
{
    /* volatile: otherwise the compiler turns these loops into memcpy / memset calls, which
       would pull libc into every image. */
    const uint32_t *src = __data_load;
    for (volatile uint32_t *dst = __data_start; dst < __data_end;) {
        *dst++ = *src++;
    }
    for (volatile uint32_t *dst = __bss_start; dst < __bss_end;) {
        *dst++ = 0u;
    }
    sh_exit(main());
}

/* Any fault (hard fault, or the configurable faults escalated to it) and any unexpected
   exception end the program with FAULT_EXIT_STATUS. */
void Fault_Handler(void)
{
    sh_put_line("fault");
    sh_exit(FAULT_EXIT_STATUS);
}

/* The core loads SP from word 0 and starts at word 1 (Thumb addresses: bit 0 set by the
   toolchain). The linker script keeps this table at address 0. */
__attribute__((section(".vectors"), used)) static const uintptr_t vectors[16] = {
    (uintptr_t)__stack_top,   /* initial stack pointer */
    (uintptr_t)Reset_Handler, /* reset */
    (uintptr_t)Fault_Handler, /* NMI */
    (uintptr_t)Fault_Handler, /* hard fault */
    (uintptr_t)Fault_Handler, /* memory management fault */
    (uintptr_t)Fault_Handler, /* bus fault */
    (uintptr_t)Fault_Handler, /* usage fault */
    0u, 0u, 0u, 0u,           /* reserved */
    (uintptr_t)Fault_Handler, /* SVCall */
    (uintptr_t)Fault_Handler, /* debug monitor */
    0u,                       /* reserved */
    (uintptr_t)Fault_Handler, /* PendSV */
    (uintptr_t)Fault_Handler, /* SysTick */
};
