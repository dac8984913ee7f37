/* qe_hooks.h: model.c's per-layer hooks in the firmware: the port times each layer, then
 * main.c takes the CRC of its output when the host asked for a trace (outside the timed part). */
#ifndef QE_HOOKS_H
#define QE_HOOKS_H

void port_layer_begin(int index);
void port_layer_end(int index);
void qe_trace_layer(int index);
#define QE_LAYER_BEGIN(index) port_layer_begin(index)
#define QE_LAYER_END(index) (port_layer_end(index), qe_trace_layer(index))

#endif /* QE_HOOKS_H */
