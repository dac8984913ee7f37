/* kernel_runner.c: one layer through one kernel on the host (tests/test_kernels.py). argv[1]
 * holds the layer: 22 u32 fields (CASE in the test), then the arena's initial bytes, weights,
 * bias, mult (int32 each), shift (int8), mult_res (int32); argv[2] receives the final arena. The
 * same file is built with the optimized kernels and with the reference ones. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "qe_model_kernels.h"

static void *read_n(FILE *f, size_t n)
{
    void *p = malloc(n ? n : 1u);
    if (!p || fread(p, 1, n, f) != n) {
        exit(2);
    }
    return p;
}

int main(int argc, char **argv)
{
    uint32_t v[22];
    qe_model_layer_t l;
    uint8_t *arena;
    FILE *f;
    if (argc != 3 || !(f = fopen(argv[1], "rb")) || fread(v, 4, 22, f) != 22) {
        return 2;
    }
    l.h_in = (uint16_t)v[1]; l.w_in = (uint16_t)v[2]; l.c_in = (uint16_t)v[3];
    l.h_out = (uint16_t)v[4]; l.w_out = (uint16_t)v[5]; l.c_out = (uint16_t)v[6];
    l.kernel = (uint8_t)v[7]; l.stride = (uint8_t)v[8];
    l.pad_top = (uint8_t)(v[9] & 0xFFu); l.pad_bottom = (uint8_t)(v[9] >> 8);
    l.pad_left = (uint8_t)(v[9] >> 16); l.pad_right = (uint8_t)(v[9] >> 24);
    l.bits_in = (uint8_t)v[10]; l.bits_w = (uint8_t)v[11]; l.bits_out = (uint8_t)v[12];
    l.bits_res = (uint8_t)v[13]; l.signed_in = (uint8_t)v[14]; l.signed_res = (uint8_t)v[15];
    l.lo = (int16_t)(int32_t)v[16]; l.hi = (int16_t)(int32_t)v[17];
    l.in_off = v[18] & 0xFFFFu; l.out_off = v[18] >> 16; l.res_off = v[19] & 0xFFFFu;
    l.scratch_off = v[19] >> 16; l.scratch_room = v[20];
    arena = read_n(f, v[21]);
    l.weights = read_n(f, ((size_t)v[0] >> 8));
    l.bias = read_n(f, 4u * l.c_out);
    l.mult = read_n(f, 4u * l.c_out);
    l.shift = read_n(f, l.c_out);
    l.mult_res = l.bits_res ? read_n(f, 4u * l.c_out) : 0;
    fclose(f);
    switch (v[0] & 0xFFu) {
    case 0: qe_model_conv1x1_hwc(&l, arena); break;
    case 1: qe_model_dwconv_hwc_inplace(&l, arena); break;
    case 3: { /* the logits and then the class go to the output */
        int8_t *logits = (int8_t *)(void *)(arena + l.out_off);
        logits[l.c_out] = (int8_t)qe_model_head(&l, arena, logits);
        break;
    }
    default: qe_model_conv_hwc(&l, arena); break;
    }
    if (!(f = fopen(argv[2], "wb")) || fwrite(arena, 1, v[21], f) != v[21]) {
        return 2;
    }
    fclose(f);
    return 0;
}
