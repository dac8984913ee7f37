/* main.c: the firmware's main loop. Serves the serial protocol of qe_protocol.h: hello, image
 * chunks straight into the arena's input slot, inference, stats. Never blocks on a broken
 * frame (a frame whose next byte is late is dropped), never writes past its buffers. */
#include <stdint.h>
#include <string.h>

#include "model.h"
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

static uint32_t hello(uint8_t seq)
{
    uint8_t *p = tx + QE_PROTO_HEADER_BYTES;
    p[0] = (uint8_t)QE_PROTO_VERSION;
    p[1] = (uint8_t)(QE_PROTO_VERSION >> 8);
    memcpy(p + 2, QE_MODEL_HASH, 16);
    p[18] = (uint8_t)QE_RESOLUTION;
    p[19] = (uint8_t)(QE_RESOLUTION >> 8);
    p[20] = (uint8_t)QE_IN_CHANNELS;
    p[21] = (uint8_t)(QE_IN_CHANNELS >> 8);
    p[22] = (uint8_t)QE_NUM_CLASSES;
    p[23] = (uint8_t)(QE_NUM_CLASSES >> 8);
    put32(p + 24, QE_ARENA_BYTES);
    put32(p + 28, QE_INPUT_BYTES);
    p[32] = QE_INPUT_BITS;
    p[33] = port_counter_kind();
    p[34] = (uint8_t)QE_NUM_LAYERS;
    p[35] = (uint8_t)(QE_NUM_LAYERS >> 8);
    return send(QE_PROTO_HELLO | QE_PROTO_RESPONSE, seq, 36u);
}

static uint32_t load(uint8_t seq, uint32_t length)
{
    uint32_t offset, n;
    if (length < 4u) {
        return send_error(seq, QE_PROTO_ERR_BAD_LENGTH, length);
    }
    offset = get32(rx + QE_PROTO_HEADER_BYTES);
    n = length - 4u;
    if (offset > QE_INPUT_BYTES || n > QE_INPUT_BYTES - offset) {
        return send_error(seq, QE_PROTO_ERR_OUT_OF_RANGE, offset);
    }
    if (offset != 0u && offset != loaded) {
        return send_error(seq, QE_PROTO_ERR_OUT_OF_ORDER, loaded);
    }
    memcpy(qe_model_input() + offset, rx + QE_PROTO_HEADER_BYTES + 4u, n);
    loaded = offset + n;
    put32(tx + QE_PROTO_HEADER_BYTES, loaded);
    return send(QE_PROTO_LOAD | QE_PROTO_RESPONSE, seq, 4u);
}

static uint32_t infer(uint8_t seq, uint32_t length)
{
    uint8_t *p = tx + QE_PROTO_HEADER_BYTES;
    uint32_t n = 12u + QE_NUM_CLASSES, i;
    uint64_t count;
    int label;
    if (length != 1u) {
        return send_error(seq, QE_PROTO_ERR_BAD_LENGTH, length);
    }
    if (loaded != QE_INPUT_BYTES) {
        return send_error(seq, QE_PROTO_ERR_NO_IMAGE, loaded);
    }
    loaded = 0u; /* the input slot is reused by the network: load again before the next run */
    port_counter_start();
    label = qe_model_run((int8_t *)(p + 12));
    count = port_counter_stop();
    p[0] = (uint8_t)label;
    p[1] = port_counter_kind();
    p[2] = p[3] = 0u;
    put32(p + 4, (uint32_t)count);
    put32(p + 8, (uint32_t)(count >> 32));
    if (rx[QE_PROTO_HEADER_BYTES] & QE_PROTO_INFER_PER_LAYER) {
        const uint32_t *counts = port_layer_counts();
        for (i = 0; i < QE_NUM_LAYERS; i++) {
            put32(p + n + 4u * i, counts[i]);
        }
        n += 4u * QE_NUM_LAYERS;
    }
    return send(QE_PROTO_INFER | QE_PROTO_RESPONSE, seq, n);
}

static uint32_t stats(uint8_t seq)
{
    uint8_t *p = tx + QE_PROTO_HEADER_BYTES;
    put32(p, qe_stack_size() - qe_stack_untouched());
    put32(p + 4, qe_stack_size());
    put32(p + 8, QE_ARENA_BYTES);
    put32(p + 12, QE_INPUT_BYTES);
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
