/* Hooks of the host runner: after each layer, dump its output buffer. */
#ifndef QE_HOST_HOOKS_H
#define QE_HOST_HOOKS_H

void qe_host_layer_end(int index);
#define QE_LAYER_END(index) qe_host_layer_end(index)

#endif
