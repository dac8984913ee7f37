/* dwt.c: cycle counts from the DWT's CYCCNT (ARMv7-M C1.8, Cortex-M7 TRM): the whole inference
 * and each layer. The port calls dwt_init(); these are the port.h counter functions. */
#include <stdint.h>

#include "dwt.h"
#include "qe_app.h"
#include "port.h"
#include "qe_protocol.h"

#define DEMCR (*(volatile uint32_t *)0xE000EDFCu)
#define DWT_CTRL (*(volatile uint32_t *)0xE0001000u)
#define DWT_CYCCNT (*(volatile uint32_t *)0xE0001004u)
#define DWT_LAR (*(volatile uint32_t *)0xE0001FB0u)

static uint32_t start_cycles, layer_start;
static uint32_t counts[QE_APP_NUM_LAYERS];

void dwt_init(void)
{
    DEMCR |= 1u << 24;      /* TRCENA */
    DWT_LAR = 0xC5ACCE55u;  /* unlock the DWT */
    DWT_CYCCNT = 0u;
    DWT_CTRL |= 1u;         /* CYCCNTENA */
}

void port_counter_start(void)
{
    start_cycles = DWT_CYCCNT;
}

uint64_t port_counter_stop(void)
{
    return (uint32_t)(DWT_CYCCNT - start_cycles);
}

uint8_t port_counter_kind(void)
{
    return QE_COUNTER_CYCLES;
}

const uint32_t *port_layer_counts(void)
{
    return counts;
}

void port_layer_begin(int index)
{
    (void)index;
    layer_start = DWT_CYCCNT;
}

void port_layer_end(int index)
{
    counts[index] = DWT_CYCCNT - layer_start;
}

void port_batch(void)
{
}
