/* startup.c: vector table and reset for ARMv7-M cores (ARMv7-M Architecture Reference Manual,
 * B1.5.3 "The vector table"). Copies .data, zeroes .bss, enables the FPU when the board's core
 * has one (the compiler then defines __ARM_FP: docs/boards.md), paints the stack. */
#include <stdint.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _sstack, _estack;
extern int main(void);

#define QE_STACK_PAINT 0xC0DEC0DEu

void Reset_Handler(void);
void Default_Handler(void);
void NMI_Handler(void) __attribute__((weak, alias("Default_Handler")));
void HardFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void MemManage_Handler(void) __attribute__((weak, alias("Default_Handler")));
void BusFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void UsageFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void SVC_Handler(void) __attribute__((weak, alias("Default_Handler")));
void DebugMon_Handler(void) __attribute__((weak, alias("Default_Handler")));
void PendSV_Handler(void) __attribute__((weak, alias("Default_Handler")));
void SysTick_Handler(void) __attribute__((weak, alias("Default_Handler")));

/* A vector table entry: the initial stack pointer, then handlers (ISO C has no conversion
 * between object and function pointers, so the first entry is a union member of its own). */
typedef union {
    const uint32_t *stack;
    void (*handler)(void);
} qe_vector_t;

__attribute__((section(".isr_vector"), used)) const qe_vector_t qe_vectors[16] = {
    {.stack = &_estack}, {.handler = Reset_Handler}, {.handler = NMI_Handler},
    {.handler = HardFault_Handler}, {.handler = MemManage_Handler}, {.handler = BusFault_Handler},
    {.handler = UsageFault_Handler}, {0}, {0}, {0}, {0}, {.handler = SVC_Handler},
    {.handler = DebugMon_Handler}, {0}, {.handler = PendSV_Handler}, {.handler = SysTick_Handler},
};

void Default_Handler(void)
{
    for (;;) {
    }
}

/* Bytes of the stack never written since reset (the painted words still intact). */
uint32_t qe_stack_untouched(void)
{
    const uint32_t *p = &_sstack;
    while (p < &_estack && *p == QE_STACK_PAINT) {
        p++;
    }
    return (uint32_t)((const uint8_t *)p - (const uint8_t *)&_sstack);
}

uint32_t qe_stack_size(void)
{
    return (uint32_t)((const uint8_t *)&_estack - (const uint8_t *)&_sstack);
}

void Reset_Handler(void)
{
    uint32_t *src = &_sidata, *dst = &_sdata, *sp;
#if defined(__ARM_FP)
    /* CPACR (0xE000ED88): full access to CP10/CP11, the FPU (B3.2.20). */
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    while (dst < &_edata) {
        *dst++ = *src++;
    }
    for (dst = &_sbss; dst < &_ebss; dst++) {
        *dst = 0;
    }
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (dst = &_sstack; dst < sp - 16; dst++) {
        *dst = QE_STACK_PAINT;
    }
    (void)main();
    for (;;) {
    }
}
