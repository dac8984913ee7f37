/* timebase.c: a millisecond tick from SysTick (ARMv7-M B3.3), for the protocol's timeouts. */
#include <stdint.h>

#include "timebase.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

static volatile uint32_t millis;

void SysTick_Handler(void)
{
    millis++;
}

void timebase_init(uint32_t cpu_hz)
{
    SYST_RVR = cpu_hz / 1000u - 1u;
    SYST_CVR = 0u;
    SYST_CSR = 7u; /* processor clock, interrupt, enable */
}

uint32_t timebase_millis(void)
{
    return millis;
}

uint64_t timebase_ticks(void)
{
    uint32_t ms, cvr;
    do { /* a tick between the two reads: read again */
        ms = millis;
        cvr = SYST_CVR;
    } while (ms != millis);
    return (uint64_t)ms * (SYST_RVR + 1u) + (SYST_RVR - cvr);
}
