/* timebase.h: processor clocks and milliseconds since timebase_init (SysTick, polled). */
#ifndef QE_TIMEBASE_H
#define QE_TIMEBASE_H

#include <stdint.h>

void timebase_init(uint32_t cpu_hz);
uint32_t timebase_millis(void);
uint64_t timebase_ticks(void); /* processor clock ticks since timebase_init */

#endif /* QE_TIMEBASE_H */
