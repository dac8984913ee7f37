/* timebase.c: time from SysTick (ARMv7-M B3.3) without its interrupt: the counter runs free
 * over its whole 24-bit range and every read polls COUNTFLAG, so no exception ever lands inside
 * an inference and instruction counts repeat exactly. Reads must come at least once per
 * 2^24 processor clocks (0.67 s at 25 MHz, 78 ms at 216 MHz): the protocol's loops poll
 * continuously, and the per-layer hooks read it around every layer. */
#include <stdint.h>

#include "timebase.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define COUNTFLAG (1u << 16)
#define RELOAD 0x00FFFFFFu

static uint64_t wrapped;     /* processor clocks of the counter's completed periods */
static uint32_t clocks_per_ms;

void timebase_init(uint32_t cpu_hz)
{
    clocks_per_ms = cpu_hz / 1000u;
    SYST_RVR = RELOAD;
    SYST_CVR = 0u;
    SYST_CSR = 5u; /* processor clock, enable, no interrupt */
}

/* Branch-free, so that its cost never depends on when the counter wraps: reading CSR clears
 * COUNTFLAG; a wrap between the two CSR reads is counted and the second CVR read used. */
uint64_t timebase_ticks(void)
{
    uint32_t before = (SYST_CSR & COUNTFLAG) >> 16;
    uint32_t c1 = SYST_CVR;
    uint32_t around = (SYST_CSR & COUNTFLAG) >> 16;
    uint32_t c2 = SYST_CVR;
    uint32_t cvr = c1 ^ ((c1 ^ c2) & (0u - around));
    wrapped += (uint64_t)(before + around) << 24; /* RELOAD + 1 = 2^24 clocks a period */
    return wrapped + (RELOAD - cvr);
}

uint32_t timebase_millis(void)
{
    return (uint32_t)(timebase_ticks() / clocks_per_ms);
}
