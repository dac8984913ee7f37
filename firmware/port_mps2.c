/* port_mps2.c: QEMU's mps2-an500 (Cortex-M7), the CI target. CMSDK UART0 at 0x40004000
 * (ARM DDI 0479, "UART"), SysTick for timeouts (timebase.c), semihosting for bulk batches and the exit code.
 * Instructions are counted exactly by the qecount TCG plugin at each call of qe_mark(); without
 * the plugin, the host runs QEMU with -icount and reads the SysTick ticks these functions return
 * (one tick per 40 instructions: an estimate). */
#include <stdint.h>

#include "qe_app.h"
#include "port.h"
#include "qe_protocol.h"
#include "timebase.h"

#define UART_DATA (*(volatile uint32_t *)0x40004000u)
#define UART_STATE (*(volatile uint32_t *)0x40004004u) /* bit 0: TX full, bit 1: RX full */
#define UART_CTRL (*(volatile uint32_t *)0x40004008u)  /* bit 0: TX enable, bit 1: RX enable */
#define UART_BAUDDIV (*(volatile uint32_t *)0x40004010u)
#define CPU_HZ 25000000u /* the AN500's system clock, as QEMU models it */

static uint64_t start_ticks, layer_start;
static uint32_t counts[QE_APP_NUM_LAYERS];

/* The plugin's marker: an empty function whose address the host reads from the ELF. */
__attribute__((noinline, used)) void qe_mark(void)
{
    __asm__ volatile("");
}

void port_init(void)
{
    UART_BAUDDIV = 16u;
    UART_CTRL = 3u;
    timebase_init(CPU_HZ);
}

int port_getc(uint32_t timeout_ms)
{
    uint32_t start = timebase_millis();
    while (!(UART_STATE & 2u)) {
        if (timeout_ms && timebase_millis() - start >= timeout_ms) {
            return -1;
        }
    }
    return (int)(UART_DATA & 0xFFu);
}

void port_write(const uint8_t *data, uint32_t n)
{
    while (n--) {
        while (UART_STATE & 1u) {
        }
        UART_DATA = *data++;
    }
}

void port_counter_start(void)
{
    qe_mark();
    start_ticks = timebase_ticks();
}

uint64_t port_counter_stop(void)
{
    uint64_t ticks = timebase_ticks() - start_ticks;
    qe_mark();
    return ticks;
}

uint8_t port_counter_kind(void)
{
    return QE_COUNTER_SYSTICK;
}

const uint32_t *port_layer_counts(void)
{
    return counts;
}

void port_layer_begin(int index)
{
    (void)index;
    qe_mark();
    layer_start = timebase_ticks();
}

void port_layer_end(int index)
{
    counts[index] = (uint32_t)(timebase_ticks() - layer_start);
    qe_mark();
}

/* ARM semihosting (ARM DUI 0471, "Semihosting operations"): r0 = operation, r1 = arguments. */
static int32_t semihost(uint32_t op, const void *args)
{
    register uint32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = args;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return (int32_t)r0;
}

static int32_t semi_open(const char *name, uint32_t len, uint32_t mode)
{
    uint32_t args[3] = {(uint32_t)name, mode, len};
    return semihost(0x01u, args);
}

static int32_t semi_io(uint32_t op, int32_t fd, void *buf, uint32_t n)
{
    uint32_t args[3] = {(uint32_t)fd, (uint32_t)buf, n};
    return semihost(op, args); /* SYS_READ 0x06 / SYS_WRITE 0x05: bytes not transferred */
}

static void semi_exit(uint32_t code)
{
    uint32_t args[2] = {0x20026u, code}; /* ADP_Stopped_ApplicationExit */
    (void)semihost(0x20u, args);
}

/* Batch mode for tests: if QEMU's working directory holds qe_batch.in (count u32, flags u32,
 * then count packed inputs), run each and write logits, class (u16 LE) and (flags bit 0) the
 * arena to qe_batch.out, then exit 0. Without the file, return to the serial protocol. */
void port_batch(void)
{
    static const char in_name[] = "qe_batch.in", out_name[] = "qe_batch.out";
    uint32_t head[2], i;
    int32_t in = semi_open(in_name, sizeof in_name - 1u, 1u), out;
    if (in < 0) {
        return;
    }
    out = semi_open(out_name, sizeof out_name - 1u, 5u);
    if (out < 0 || semi_io(0x06u, in, head, sizeof head) != 0) {
        semi_exit(2u);
    }
    for (i = 0; i < head[0]; i++) {
        static int8_t logits[QE_APP_NUM_CLASSES];
        uint8_t label[2];
        int c;
        if (semi_io(0x06u, in, qe_app_input(), QE_APP_INPUT_BYTES) != 0) {
            semi_exit(3u);
        }
        port_counter_start();
        c = qe_app_run(logits);
        (void)port_counter_stop();
        label[0] = (uint8_t)c;
        label[1] = (uint8_t)(c >> 8);
        (void)semi_io(0x05u, out, logits, sizeof logits);
        (void)semi_io(0x05u, out, label, sizeof label);
        if (head[1] & 1u) {
            (void)semi_io(0x05u, out, qe_app_arena(), QE_APP_ARENA_BYTES);
        }
    }
    semi_exit(0u);
}
