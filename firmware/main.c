/* main.c: the firmware's main loop. Serves the serial protocol of qe_protocol.h (docs/protocol.md):
 * hello, image chunks straight into the arena's input slot, inference, reads of its outputs and
 * per-layer counts in chunks, stats. Never blocks on a broken frame (a frame whose next byte is
 * late is dropped), never writes past its buffers: a reply of any size goes out as READ chunks. */
#include <stdint.h>
#include <string.h>

#include "qe_app.h"
#include "port.h"
#include "qe_protocol.h"

extern uint32_t qe_stack_untouched(void);
extern uint32_t qe_stack_size(void);

#define QE_FRAME_BYTES (QE_PROTO_HEADER_BYTES + QE_PROTO_MAX_PAYLOAD + 4u)

static uint8_t rx[QE_FRAME_BYTES];
static uint8_t tx[QE_FRAME_BYTES];
static uint32_t tx_len;          /* bytes of the cached last response (0: none) */
static int32_t last_seq = -1;    /* seq and type of the request that response answers */
static uint8_t last_type;
static uint32_t loaded;          /* input bytes loaded contiguously from offset 0 */
static int8_t output[QE_APP_NUM_CLASSES]; /* the last inference's outputs */
static uint32_t have_result;     /* an inference has run since reset */
static uint32_t tracing;         /* this inference takes each layer's CRC (INFER_TRACE) */
static uint32_t traced;          /* the last inference did */
static uint32_t layer_crc[QE_APP_NUM_LAYERS];
static uint32_t frames_ok, frames_bad;

/* CRC-32 (IEEE 802.3, reflected, as zlib.crc32), four bits at a time. */
static uint32_t crc32(const uint8_t *p, uint32_t n)
{
    static const uint32_t t[16] = {
        0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
        0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
        0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
    };
    uint32_t crc = 0xFFFFFFFFu;
    while (n--) {
        crc = (crc >> 4) ^ t[(crc ^ *p) & 15u];
        crc = (crc >> 4) ^ t[(crc ^ (uint32_t)(*p >> 4)) & 15u];
        p++;
    }
    return ~crc;
}

/* model.c's hook after each layer (qe_hooks.h): the CRC-32 of its output, when tracing. */
void qe_trace_layer(int index)
{
    if (tracing) {
        const uint8_t *data;
        uint32_t n = qe_app_layer_output(index, &data);
        layer_crc[index] = crc32(data, n);
    }
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Frame the `n` payload bytes already in tx[8..] and send them; returns the frame length. */
static uint32_t send(uint8_t type, uint8_t seq, uint32_t n)
{
    tx[0] = QE_PROTO_MAGIC0;
    tx[1] = QE_PROTO_MAGIC1;
    tx[2] = type;
    tx[3] = seq;
    put32(tx + 4, n);
    put32(tx + QE_PROTO_HEADER_BYTES + n, crc32(tx + 2, 6u + n));
    port_write(tx, QE_PROTO_HEADER_BYTES + n + 4u);
    return QE_PROTO_HEADER_BYTES + n + 4u;
}

static uint32_t send_error(uint8_t seq, uint8_t code, uint32_t detail)
{
    tx[QE_PROTO_HEADER_BYTES] = code;
    put32(tx + QE_PROTO_HEADER_BYTES + 1u, detail);
    return send(QE_PROTO_ERROR, seq, 5u);
}

/* Read one frame into rx; returns its payload length, or -1 for a dropped frame. */
static int32_t receive(void)
{
    uint32_t i, n, length;
    int c;
    do { /* hunt the magic */
        c = port_getc(0);
        while (c == QE_PROTO_MAGIC0) {
            c = port_getc(QE_PROTO_FRAME_TIMEOUT_MS);
            if (c == QE_PROTO_MAGIC1) {
                break;
            }
        }
    } while (c != QE_PROTO_MAGIC1);
    for (i = 2; i < QE_PROTO_HEADER_BYTES; i++) {
        if ((c = port_getc(QE_PROTO_FRAME_TIMEOUT_MS)) < 0) {
            return -1;
        }
        rx[i] = (uint8_t)c;
    }
    length = get32(rx + 4);
    if (length > QE_PROTO_MAX_PAYLOAD) {
        frames_bad++;
        send_error(rx[3], QE_PROTO_ERR_OVERSIZE, length);
        return -1;
    }
    n = QE_PROTO_HEADER_BYTES + length + 4u;
    for (; i < n; i++) {
        if ((c = port_getc(QE_PROTO_FRAME_TIMEOUT_MS)) < 0) {
            return -1;
        }
        rx[i] = (uint8_t)c;
    }
    if (crc32(rx + 2, 6u + length) != get32(rx + QE_PROTO_HEADER_BYTES + length)) {
        frames_bad++;
        send_error(rx[3], QE_PROTO_ERR_CRC, 0u);
        return -1;
    }
    frames_ok++;
    return (int32_t)length;
}

static void put16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static uint32_t hello(uint8_t seq)
{
    uint8_t *p = tx + QE_PROTO_HEADER_BYTES;
    put16(p, QE_PROTO_VERSION);
    memcpy(p + 2, QE_APP_HASH, 16);
    put16(p + 18, QE_APP_INPUT_HEIGHT);
    put16(p + 20, QE_APP_INPUT_WIDTH);
    put16(p + 22, QE_APP_INPUT_CHANNELS);
    p[24] = QE_APP_INPUT_BITS;
    p[25] = QE_APP_INPUT_SIGNED;
    put32(p + 26, QE_APP_INPUT_SCALE_BITS);
    put32(p + 30, (uint32_t)(int32_t)QE_APP_INPUT_ZERO_POINT);
    put16(p + 34, QE_APP_NUM_CLASSES);
    p[36] = QE_APP_OUTPUT_BITS;
    p[37] = 0u;
    put32(p + 38, QE_APP_OUTPUT_SCALE_BITS);
    put32(p + 42, (uint32_t)(int32_t)QE_APP_OUTPUT_ZERO_POINT);
    put32(p + 46, QE_APP_ARENA_BYTES);
    put32(p + 50, QE_APP_INPUT_BYTES);
    p[54] = port_counter_kind();
    p[55] = 0u;
    put16(p + 56, QE_APP_NUM_LAYERS);
    return send(QE_PROTO_HELLO | QE_PROTO_RESPONSE, seq, 58u);
}

static uint32_t load(uint8_t seq, uint32_t length)
{
    uint32_t offset, n;
    if (length < 4u) {
        return send_error(seq, QE_PROTO_ERR_BAD_LENGTH, length);
    }
    offset = get32(rx + QE_PROTO_HEADER_BYTES);
    n = length - 4u;
    if (offset > QE_APP_INPUT_BYTES || n > QE_APP_INPUT_BYTES - offset) {
        return send_error(seq, QE_PROTO_ERR_OUT_OF_RANGE, offset);
    }
    if (offset != 0u && offset != loaded) {
        return send_error(seq, QE_PROTO_ERR_OUT_OF_ORDER, loaded);
    }
    memcpy(qe_app_input() + offset, rx + QE_PROTO_HEADER_BYTES + 4u, n);
    loaded = offset + n;
    put32(tx + QE_PROTO_HEADER_BYTES, loaded);
    return send(QE_PROTO_LOAD | QE_PROTO_RESPONSE, seq, 4u);
}

/* Run the network; the reply is a summary, READ fetches the outputs and per-layer counts. */
static uint32_t infer(uint8_t seq, uint32_t length)
{
    uint8_t *p = tx + QE_PROTO_HEADER_BYTES;
    uint8_t flags;
    uint64_t count;
    int label;
    if (length != 1u) {
        return send_error(seq, QE_PROTO_ERR_BAD_LENGTH, length);
    }
    if (loaded != QE_APP_INPUT_BYTES) {
        return send_error(seq, QE_PROTO_ERR_NO_IMAGE, loaded);
    }
    flags = rx[QE_PROTO_HEADER_BYTES];
    loaded = 0u; /* the input slot is reused by the network: load again before the next run */
    tracing = (flags & QE_PROTO_INFER_TRACE) != 0u;
    port_counter_start();
    label = qe_app_run(output);
    count = port_counter_stop();
    have_result = 1u;
    traced = tracing;
    tracing = 0u;
    put16(p, (uint32_t)label);
    p[2] = port_counter_kind();
    p[3] = flags;
    put32(p + 4, (uint32_t)count);
    put32(p + 8, (uint32_t)(count >> 32));
    put32(p + 12, QE_APP_NUM_CLASSES);
    put32(p + 16, (flags & QE_PROTO_INFER_PER_LAYER) ? 4u * QE_APP_NUM_LAYERS : 0u);
    return send(QE_PROTO_INFER | QE_PROTO_RESPONSE, seq, 20u);
}

/* One chunk of the last inference's outputs (int8), per-layer counts or, after a traced
 * inference, per-layer output CRCs (u32 LE). */
static uint32_t read_area(uint8_t seq, uint32_t length)
{
    uint8_t *p = tx + QE_PROTO_HEADER_BYTES;
    uint8_t area;
    uint32_t offset, size, n, i;
    const uint32_t *words = port_layer_counts();
    if (length != 5u) {
        return send_error(seq, QE_PROTO_ERR_BAD_LENGTH, length);
    }
    if (!have_result) {
        return send_error(seq, QE_PROTO_ERR_NO_RESULT, 0u);
    }
    area = rx[QE_PROTO_HEADER_BYTES];
    offset = get32(rx + QE_PROTO_HEADER_BYTES + 1u);
    if (area == QE_PROTO_AREA_OUTPUT) {
        size = QE_APP_NUM_CLASSES;
    } else if (area == QE_PROTO_AREA_LAYER_COUNTS) {
        size = 4u * QE_APP_NUM_LAYERS;
    } else if (area == QE_PROTO_AREA_LAYER_CRCS && traced) {
        size = 4u * QE_APP_NUM_LAYERS;
        words = layer_crc;
    } else {
        return send_error(seq, QE_PROTO_ERR_OUT_OF_RANGE, area);
    }
    if (offset > size) {
        return send_error(seq, QE_PROTO_ERR_OUT_OF_RANGE, offset);
    }
    n = size - offset < QE_PROTO_READ_CHUNK ? size - offset : QE_PROTO_READ_CHUNK;
    p[0] = area;
    put32(p + 1, offset);
    for (i = 0; i < n; i++) {
        uint32_t at = offset + i;
        p[5u + i] = area == QE_PROTO_AREA_OUTPUT ? (uint8_t)output[at]
                                                 : (uint8_t)(words[at / 4u] >> (8u * (at % 4u)));
    }
    return send(QE_PROTO_READ | QE_PROTO_RESPONSE, seq, 5u + n);
}

static uint32_t stats(uint8_t seq)
{
    uint8_t *p = tx + QE_PROTO_HEADER_BYTES;
    put32(p, qe_stack_size() - qe_stack_untouched());
    put32(p + 4, qe_stack_size());
    put32(p + 8, QE_APP_ARENA_BYTES);
    put32(p + 12, QE_APP_INPUT_BYTES);
    put32(p + 16, frames_ok);
    put32(p + 20, frames_bad);
    return send(QE_PROTO_STATS | QE_PROTO_RESPONSE, seq, 24u);
}

int main(void)
{
    port_init();
    port_batch();
    for (;;) {
        int32_t length = receive();
        uint8_t type = rx[2], seq = rx[3];
        if (length < 0) {
            continue;
        }
        if ((int32_t)seq == last_seq && type == last_type && tx_len) {
            port_write(tx, tx_len); /* a retry: the response was lost, send it again */
            continue;
        }
        switch (type) {
        case QE_PROTO_HELLO:
            tx_len = length ? send_error(seq, QE_PROTO_ERR_BAD_LENGTH, (uint32_t)length) : hello(seq);
            break;
        case QE_PROTO_LOAD:
            tx_len = load(seq, (uint32_t)length);
            break;
        case QE_PROTO_INFER:
            tx_len = infer(seq, (uint32_t)length);
            break;
        case QE_PROTO_READ:
            tx_len = read_area(seq, (uint32_t)length);
            break;
        case QE_PROTO_STATS:
            tx_len = length ? send_error(seq, QE_PROTO_ERR_BAD_LENGTH, (uint32_t)length) : stats(seq);
            break;
        default:
            tx_len = send_error(seq, QE_PROTO_ERR_UNKNOWN_TYPE, type);
            break;
        }
        last_seq = seq;
        last_type = type;
    }
}
