/* harness.c: one emulator image running qetool's kernels and CMSIS-NN's on the same shapes
 * (bench/vs_cmsis_nn.py). The cases come by semihosting from cases.bin: a case_t header and its
 * data (input, weights, bias, multipliers, shifts). Each kernel call sits between two calls of
 * qe_mark(), where the counting plugin logs the instruction counter; every output goes to
 * outputs.bin for the host to check. */
#include <stdint.h>
#include <string.h>

#include "arm_nnfunctions.h"
#include "qe_model_kernels.h"

enum {
    QE_CONV1X1 = 0, QE_DWCONV = 1, QE_STEM = 2, QE_HEAD = 3,
    NN_CONV_S8 = 10, NN_DW_S8 = 11, NN_CONV_S4 = 12, NN_DW_S4 = 13, NN_HEAD_S8 = 14, NN_HEAD_S4 = 15
};

/* One case, as bench/vs_cmsis_nn.py packs it (CASE, little-endian u32/i32 fields). */
typedef struct {
    uint32_t kind, h, w, cin, cout, k, stride, pad_top, pad_bottom, pad_left, pad_right;
    uint32_t h_out, w_out, bits_in, bits_w, bits_out, signed_in;
    int32_t lo, hi, in_offset, out_offset;
    uint32_t in_bytes, w_bytes, out_bytes, scratch; /* scratch: qetool's room (bytes) */
} case_t;

#define POOL_BYTES (3u * 1024u * 1024u)
static uint8_t pool[POOL_BYTES] __attribute__((aligned(8)));

__attribute__((noinline, used)) void qe_mark(void)
{
    __asm__ volatile("");
}

static int32_t semihost(uint32_t op, const void *args)
{
    register uint32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = args;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return (int32_t)r0;
}

static int32_t semi_open(const char *name, uint32_t mode)
{
    uint32_t args[3] = {(uint32_t)name, mode, (uint32_t)strlen(name)};
    return semihost(0x01u, args);
}

static int32_t semi_io(uint32_t op, int32_t fd, void *buf, uint32_t n)
{
    uint32_t args[3] = {(uint32_t)fd, (uint32_t)buf, n};
    return semihost(op, args);
}

static void semi_exit(uint32_t code)
{
    uint32_t args[2] = {0x20026u, code};
    (void)semihost(0x20u, args);
}

static uint8_t *take(uint32_t *used, uint32_t n)
{
    uint8_t *p = pool + *used;
    *used += (n + 7u) & ~7u;
    if (*used > POOL_BYTES) {
        semi_exit(3u);
    }
    return p;
}

/* qetool's kernel on the arena (input at 0, then the output, then the scratch); the head writes
 * its logits to `logits`. */
static void run_qetool(const case_t *c, const uint8_t *w, const int32_t *bias, const int32_t *mult,
                       const int8_t *shift, uint8_t *arena, int8_t *logits)
{
    qe_model_layer_t l;
    memset(&l, 0, sizeof l);
    l.h_in = (uint16_t)c->h; l.w_in = (uint16_t)c->w; l.c_in = (uint16_t)c->cin;
    l.h_out = (uint16_t)c->h_out; l.w_out = (uint16_t)c->w_out; l.c_out = (uint16_t)c->cout;
    l.kernel = (uint8_t)c->k; l.stride = (uint8_t)c->stride;
    l.pad_top = (uint8_t)c->pad_top; l.pad_bottom = (uint8_t)c->pad_bottom;
    l.pad_left = (uint8_t)c->pad_left; l.pad_right = (uint8_t)c->pad_right;
    l.bits_in = (uint8_t)c->bits_in; l.bits_w = (uint8_t)c->bits_w; l.bits_out = (uint8_t)c->bits_out;
    l.signed_in = (uint8_t)c->signed_in; l.lo = (int16_t)c->lo; l.hi = (int16_t)c->hi;
    l.in_off = 0u;
    l.out_off = c->kind == QE_DWCONV ? 0u : (c->in_bytes + 3u) & ~3u;
    l.scratch_off = c->kind == QE_DWCONV ? (c->in_bytes + 3u) & ~3u : l.out_off + ((c->out_bytes + 3u) & ~3u);
    l.scratch_room = c->scratch;
    l.weights = w; l.bias = bias; l.mult = mult; l.shift = shift; l.mult_res = 0;
    qe_mark();
    if (c->kind == QE_CONV1X1) {
        qe_model_conv1x1_hwc(&l, arena);
    } else if (c->kind == QE_DWCONV) {
        qe_model_dwconv_hwc_inplace(&l, arena);
    } else if (c->kind == QE_HEAD) {
        (void)qe_model_head(&l, arena, logits);
    } else {
        qe_model_conv_hwc(&l, arena);
    }
    qe_mark();
}

static void *buffer(cmsis_nn_context *ctx, uint32_t *used, int32_t size)
{
    ctx->size = size;
    ctx->buf = take(used, size > 0 ? (uint32_t)size : 4u);
    memset(ctx->buf, 0, size > 0 ? (uint32_t)size : 0u);
    return ctx->buf;
}

static int32_t run_cmsis(const case_t *c, const int8_t *in, const int8_t *w, const int32_t *bias,
                         int32_t *mult, int32_t *shift, int8_t *out, uint32_t *used)
{
    cmsis_nn_context ctx = {0, 0};
    cmsis_nn_per_channel_quant_params q = {mult, shift};
    cmsis_nn_dims in_dims = {1, (int32_t)c->h, (int32_t)c->w, (int32_t)c->cin};
    cmsis_nn_dims f_dims = {(int32_t)c->cout, (int32_t)c->k, (int32_t)c->k, (int32_t)c->cin};
    cmsis_nn_dims b_dims = {1, 1, 1, (int32_t)c->cout};
    cmsis_nn_dims out_dims = {1, (int32_t)c->h_out, (int32_t)c->w_out, (int32_t)c->cout};
    cmsis_nn_tile stride = {(int32_t)c->stride, (int32_t)c->stride};
    cmsis_nn_tile pad = {(int32_t)c->pad_left, (int32_t)c->pad_top};
    cmsis_nn_tile dil = {1, 1};
    cmsis_nn_activation act = {c->lo, c->hi};
    int32_t status;
    if (c->kind == NN_HEAD_S8 || c->kind == NN_HEAD_S4) { /* average pool, then fully connected */
        cmsis_nn_context pool_ctx = {0, 0};
        cmsis_nn_pool_params pp = {{1, 1}, {0, 0}, {-128, 127}};
        cmsis_nn_dims pool_dims = {1, (int32_t)c->h, (int32_t)c->w, 1};
        cmsis_nn_dims pooled_dims = {1, 1, 1, (int32_t)c->cin};
        cmsis_nn_fc_params fp = {c->in_offset, 0, c->out_offset, act};
        cmsis_nn_per_tensor_quant_params tq = {mult[0], shift[0]};
        cmsis_nn_dims fc_filter = {(int32_t)c->cin, 1, 1, (int32_t)c->cout};
        cmsis_nn_dims fc_out = {1, 1, 1, (int32_t)c->cout};
        int8_t *pooled = (int8_t *)take(used, c->cin);
        (void)buffer(&pool_ctx, used, arm_avgpool_s8_get_buffer_size(1, (int)c->cin));
        (void)buffer(&ctx, used, arm_fully_connected_s8_get_buffer_size(&fc_filter));
        qe_mark();
        status = arm_avgpool_s8(&pool_ctx, &pp, &in_dims, in, &pool_dims, &pooled_dims, pooled);
        if (status == ARM_CMSIS_NN_SUCCESS) {
            status = c->kind == NN_HEAD_S8
                ? arm_fully_connected_s8(&ctx, &fp, &tq, &pooled_dims, pooled, &fc_filter, w, &b_dims, bias, &fc_out, out)
                : arm_fully_connected_s4(&ctx, &fp, &tq, &pooled_dims, pooled, &fc_filter, w, &b_dims, bias, &fc_out, out);
        }
        qe_mark();
    } else if (c->kind == NN_CONV_S8 || c->kind == NN_CONV_S4) {
        cmsis_nn_conv_params p = {c->in_offset, c->out_offset, stride, pad, dil, act};
        (void)buffer(&ctx, used, c->kind == NN_CONV_S8
                     ? arm_convolve_wrapper_s8_get_buffer_size(&p, &in_dims, &f_dims, &out_dims)
                     : arm_convolve_wrapper_s4_get_buffer_size(&p, &in_dims, &f_dims, &out_dims));
        qe_mark();
        status = c->kind == NN_CONV_S8
            ? arm_convolve_wrapper_s8(&ctx, &p, &q, &in_dims, in, &f_dims, w, &b_dims, bias, &out_dims, out)
            : arm_convolve_wrapper_s4(&ctx, &p, &q, &in_dims, in, &f_dims, w, &b_dims, bias, &out_dims, out);
        qe_mark();
    } else {
        cmsis_nn_dw_conv_params p = {c->in_offset, c->out_offset, 1, stride, pad, dil, act};
        f_dims.n = 1;
        f_dims.c = (int32_t)c->cout;
        (void)buffer(&ctx, used, c->kind == NN_DW_S8
                     ? arm_depthwise_conv_wrapper_s8_get_buffer_size(&p, &in_dims, &f_dims, &out_dims)
                     : arm_depthwise_conv_wrapper_s4_get_buffer_size(&p, &in_dims, &f_dims, &out_dims));
        qe_mark();
        status = c->kind == NN_DW_S8
            ? arm_depthwise_conv_wrapper_s8(&ctx, &p, &q, &in_dims, in, &f_dims, w, &b_dims, bias, &out_dims, out)
            : arm_depthwise_conv_wrapper_s4(&ctx, &p, &q, &in_dims, in, &f_dims, w, &b_dims, bias, &out_dims, out);
        qe_mark();
    }
    return status;
}

int main(void)
{
    int32_t in_fd = semi_open("cases.bin", 1u), out_fd = semi_open("outputs.bin", 5u);
    uint32_t count, i;
    if (in_fd < 0 || out_fd < 0 || semi_io(0x06u, in_fd, &count, 4u) != 0) {
        semi_exit(2u);
    }
    for (i = 0; i < count; i++) {
        case_t c;
        uint32_t used = 0;
        uint8_t *in, *w, *arena;
        int32_t *bias, *mult, *shift32;
        int8_t *shift8;
        if (semi_io(0x06u, in_fd, &c, sizeof c) != 0) {
            semi_exit(2u);
        }
        in = take(&used, c.in_bytes);
        w = take(&used, c.w_bytes);
        bias = (int32_t *)(void *)take(&used, 4u * c.cout);
        mult = (int32_t *)(void *)take(&used, 4u * c.cout);
        shift32 = (int32_t *)(void *)take(&used, 4u * c.cout);
        if (semi_io(0x06u, in_fd, in, c.in_bytes) != 0 || semi_io(0x06u, in_fd, w, c.w_bytes) != 0
            || semi_io(0x06u, in_fd, bias, 4u * c.cout) != 0 || semi_io(0x06u, in_fd, mult, 4u * c.cout) != 0
            || semi_io(0x06u, in_fd, shift32, 4u * c.cout) != 0) {
            semi_exit(2u);
        }
        if (c.kind < NN_CONV_S8) {
            uint32_t j, total = ((c.in_bytes + 3u) & ~3u) + ((c.out_bytes + 3u) & ~3u) + c.scratch;
            int8_t *logits = (int8_t *)take(&used, c.cout);
            shift8 = (int8_t *)take(&used, c.cout);
            for (j = 0; j < c.cout; j++) {
                shift8[j] = (int8_t)shift32[j];
            }
            arena = take(&used, total);
            memcpy(arena, in, c.in_bytes);
            run_qetool(&c, w, bias, mult, shift8, arena, logits);
            (void)semi_io(0x05u, out_fd, c.kind == QE_HEAD ? (uint8_t *)logits
                          : c.kind == QE_DWCONV ? arena : arena + ((c.in_bytes + 3u) & ~3u), c.out_bytes);
        } else {
            int8_t *out = (int8_t *)take(&used, c.out_bytes);
            if (run_cmsis(&c, (const int8_t *)in, (const int8_t *)w, bias, mult, shift32, out, &used) != 0) {
                semi_exit(4u);
            }
            (void)semi_io(0x05u, out_fd, out, c.out_bytes);
        }
    }
    semi_exit(0u);
    return 0;
}
