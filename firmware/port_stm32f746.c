/* port_stm32f746.c: STM32F746G-DISCO. References: RM0385 (STM32F75xxx/74xxx reference manual).
 * 216 MHz from the 25 MHz HSE; USART1 (PA9 TX, PB7 RX, AF7) on the ST-LINK virtual COM port at
 * 115200 baud; DWT CYCCNT for cycles; SysTick at 1 kHz for timeouts. */
#include <stdint.h>

#include "model.h"
#include "port.h"
#include "qe_protocol.h"

#define REG(addr) (*(volatile uint32_t *)(addr))
#define RCC 0x40023800u
#define RCC_CR REG(RCC + 0x00u)
#define RCC_PLLCFGR REG(RCC + 0x04u)
#define RCC_CFGR REG(RCC + 0x08u)
#define RCC_AHB1ENR REG(RCC + 0x30u)
#define RCC_APB1ENR REG(RCC + 0x40u)
#define RCC_APB2ENR REG(RCC + 0x44u)
#define PWR_CR1 REG(0x40007000u)
#define PWR_CSR1 REG(0x40007004u)
#define FLASH_ACR REG(0x40023C00u)
#define GPIOA 0x40020000u
#define GPIOB 0x40020400u
#define USART1 0x40011000u
#define USART1_CR1 REG(USART1 + 0x00u)
#define USART1_BRR REG(USART1 + 0x0Cu)
#define USART1_ISR REG(USART1 + 0x1Cu)
#define USART1_ICR REG(USART1 + 0x20u)
#define USART1_RDR REG(USART1 + 0x24u)
#define USART1_TDR REG(USART1 + 0x28u)
#define DEMCR REG(0xE000EDFCu)
#define DWT_CTRL REG(0xE0001000u)
#define DWT_CYCCNT REG(0xE0001004u)
#define DWT_LAR REG(0xE0001FB0u)
#define SYST_CSR REG(0xE000E010u)
#define SYST_RVR REG(0xE000E014u)
#define SYST_CVR REG(0xE000E018u)

#define SYSCLK_HZ 216000000u
#define PCLK2_HZ 108000000u
#define BAUD 115200u

static volatile uint32_t millis;
static uint32_t start_cycles, layer_start;
static uint32_t counts[QE_NUM_LAYERS];

void SysTick_Handler(void)
{
    millis++;
}

/* RM0385 5.3.2 (PLL), 3.3.2 (Flash wait states: 7 at 216 MHz, 2.7-3.6 V), 4.1.4 (over-drive). */
static void clock_216mhz(void)
{
    RCC_CR |= 1u << 16; /* HSEON */
    while (!(RCC_CR & (1u << 17))) {
    }
    RCC_APB1ENR |= 1u << 28;   /* PWREN */
    PWR_CR1 |= 3u << 14;       /* VOS: scale 1 */
    /* PLLM = 25, PLLN = 432, PLLP = 2 (00), PLLSRC = HSE, PLLQ = 9: 1 MHz in, 432 MHz VCO */
    RCC_PLLCFGR = 25u | (432u << 6) | (0u << 16) | (1u << 22) | (9u << 24);
    RCC_CR |= 1u << 24; /* PLLON */
    PWR_CR1 |= 1u << 16; /* ODEN */
    while (!(PWR_CSR1 & (1u << 16))) {
    }
    PWR_CR1 |= 1u << 17; /* ODSWEN */
    while (!(PWR_CSR1 & (1u << 17))) {
    }
    while (!(RCC_CR & (1u << 25))) { /* PLLRDY */
    }
    FLASH_ACR = 7u | (1u << 8) | (1u << 9); /* 7 wait states, prefetch, ART accelerator */
    /* AHB /1, APB1 /4 (54 MHz), APB2 /2 (108 MHz), system clock from the PLL */
    RCC_CFGR = (RCC_CFGR & ~0xFCF3u) | (5u << 10) | (4u << 13) | 2u;
    while ((RCC_CFGR & 0xCu) != 0x8u) {
    }
}

/* RM0385 6.4 (GPIO alternate functions), 31.8 (USART registers). */
static void usart1_init(void)
{
    RCC_AHB1ENR |= 3u;        /* GPIOA, GPIOB */
    RCC_APB2ENR |= 1u << 4;   /* USART1 */
    REG(GPIOA + 0x00u) = (REG(GPIOA + 0x00u) & ~(3u << 18)) | (2u << 18); /* PA9 AF */
    REG(GPIOA + 0x24u) = (REG(GPIOA + 0x24u) & ~(15u << 4)) | (7u << 4);  /* AFRH: AF7 */
    REG(GPIOB + 0x00u) = (REG(GPIOB + 0x00u) & ~(3u << 14)) | (2u << 14); /* PB7 AF */
    REG(GPIOB + 0x20u) = (REG(GPIOB + 0x20u) & ~(15u << 28)) | (7u << 28); /* AFRL: AF7 */
    USART1_BRR = (PCLK2_HZ + BAUD / 2u) / BAUD; /* oversampling by 16 */
    USART1_CR1 = (1u << 3) | (1u << 2) | 1u;     /* TE, RE, UE */
}

void port_init(void)
{
    clock_216mhz();
    usart1_init();
    DEMCR |= 1u << 24;      /* TRCENA (ARMv7-M C1.6.5) */
    DWT_LAR = 0xC5ACCE55u;  /* unlock the DWT (Cortex-M7 TRM) */
    DWT_CYCCNT = 0u;
    DWT_CTRL |= 1u;         /* CYCCNTENA */
    SYST_RVR = SYSCLK_HZ / 1000u - 1u;
    SYST_CVR = 0u;
    SYST_CSR = 7u;
}

int port_getc(uint32_t timeout_ms)
{
    uint32_t start = millis;
    while (!(USART1_ISR & (1u << 5))) { /* RXNE */
        if (USART1_ISR & (1u << 3)) {   /* ORE: drop the overrun, the frame's CRC will fail */
            USART1_ICR = 1u << 3;
        }
        if (timeout_ms && millis - start >= timeout_ms) {
            return -1;
        }
    }
    return (int)(USART1_RDR & 0xFFu);
}

void port_write(const uint8_t *data, uint32_t n)
{
    while (n--) {
        while (!(USART1_ISR & (1u << 7))) { /* TXE */
        }
        USART1_TDR = *data++;
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
