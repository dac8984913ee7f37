/* port_stm32h743.c: STM32H743, the paper's third budget: built and linked, not yet run on a
 * board. References: RM0433. Runs from the 64 MHz HSI of reset (no PLL set-up yet); USART3
 * (PD8 TX, PD9 RX, AF7) on the ST-LINK virtual COM port of the NUCLEO-H743ZI at 115200 baud;
 * DWT CYCCNT for cycles; SysTick at 1 kHz for timeouts. */
#include <stdint.h>

#include "model.h"
#include "port.h"
#include "qe_protocol.h"

#define REG(addr) (*(volatile uint32_t *)(addr))
#define RCC_AHB4ENR REG(0x580244E0u)
#define RCC_APB1LENR REG(0x580244E8u)
#define GPIOD 0x58020C00u
#define USART3 0x40004800u
#define USART3_CR1 REG(USART3 + 0x00u)
#define USART3_BRR REG(USART3 + 0x0Cu)
#define USART3_ISR REG(USART3 + 0x1Cu)
#define USART3_ICR REG(USART3 + 0x20u)
#define USART3_RDR REG(USART3 + 0x24u)
#define USART3_TDR REG(USART3 + 0x28u)
#define DEMCR REG(0xE000EDFCu)
#define DWT_CTRL REG(0xE0001000u)
#define DWT_CYCCNT REG(0xE0001004u)
#define DWT_LAR REG(0xE0001FB0u)
#define SYST_CSR REG(0xE000E010u)
#define SYST_RVR REG(0xE000E014u)
#define SYST_CVR REG(0xE000E018u)

#define HSI_HZ 64000000u
#define BAUD 115200u

static volatile uint32_t millis;
static uint32_t start_cycles, layer_start;
static uint32_t counts[QE_NUM_LAYERS];

void SysTick_Handler(void)
{
    millis++;
}

void port_init(void)
{
    RCC_AHB4ENR |= 1u << 3;    /* GPIOD (RM0433 8.7.43) */
    RCC_APB1LENR |= 1u << 18;  /* USART3 (8.7.45) */
    REG(GPIOD + 0x00u) = (REG(GPIOD + 0x00u) & ~(15u << 16)) | (10u << 16); /* PD8, PD9: AF */
    REG(GPIOD + 0x24u) = (REG(GPIOD + 0x24u) & ~0xFFu) | 0x77u;            /* AFRH: AF7 */
    USART3_BRR = (HSI_HZ + BAUD / 2u) / BAUD;
    USART3_CR1 = (1u << 3) | (1u << 2) | 1u; /* TE, RE, UE */
    DEMCR |= 1u << 24;
    DWT_LAR = 0xC5ACCE55u;
    DWT_CYCCNT = 0u;
    DWT_CTRL |= 1u;
    SYST_RVR = HSI_HZ / 1000u - 1u;
    SYST_CVR = 0u;
    SYST_CSR = 7u;
}

int port_getc(uint32_t timeout_ms)
{
    uint32_t start = millis;
    while (!(USART3_ISR & (1u << 5))) {
        if (USART3_ISR & (1u << 3)) {
            USART3_ICR = 1u << 3;
        }
        if (timeout_ms && millis - start >= timeout_ms) {
            return -1;
        }
    }
    return (int)(USART3_RDR & 0xFFu);
}

void port_write(const uint8_t *data, uint32_t n)
{
    while (n--) {
        while (!(USART3_ISR & (1u << 7))) {
        }
        USART3_TDR = *data++;
    }
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
