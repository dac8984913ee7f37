/* port.h: what the firmware needs from a target (a board or the emulator). */
#ifndef QE_PORT_H
#define QE_PORT_H

#include <stdint.h>

void port_init(void);                              /* clocks, UART, counters */
int port_getc(uint32_t timeout_ms);                /* next byte; -1 after timeout_ms (0: wait) */
void port_write(const uint8_t *data, uint32_t n);  /* blocking UART write */
void port_counter_start(void);                     /* start timing one inference */
uint64_t port_counter_stop(void);                  /* cycles since start (0 if not counted) */
uint8_t port_counter_kind(void);                   /* QE_COUNTER_* */
const uint32_t *port_layer_counts(void);           /* per-layer cycles of the last inference */
void port_batch(void);                             /* emulator: run a semihosting batch, exit */

/* Per-layer hooks of model.c (included through QE_HOOKS_HEADER="qe_hooks.h"). */
void port_layer_begin(int index);
void port_layer_end(int index);

#endif /* QE_PORT_H */
