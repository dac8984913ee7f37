/* port_stm32f746.c: STM32F746G-DISCO. References: RM0385 (STM32F75xxx/74xxx reference manual).
 * 216 MHz from the 25 MHz HSE; USART1 (PA9 TX, PB7 RX, AF7) on the ST-LINK virtual COM port at
 * 115200 baud; DWT CYCCNT for cycles (dwt.c); polled SysTick for
 * timeouts (timebase.c). */
#include <stdint.h>

#include "dwt.h"
#include "port.h"
#include "stm32_periph.h"
#include "stm32f4f7_rcc.h"
#include "timebase.h"

#define PWR_CR1 STM32_REG(0x40007000u)
#define PWR_CSR1 STM32_REG(0x40007004u)
#define GPIOA 0x40020000u
#define GPIOB 0x40020400u
#define USART1_BASE 0x40011000u

#define SYSCLK_HZ 216000000u
#define PCLK2_HZ 108000000u
#define BAUD 115200u

const stm32_usart_t stm32_console = STM32F7_USART(USART1_BASE);

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

void port_init(void)
{
    clock_216mhz();
    RCC_AHB1ENR |= 3u;        /* GPIOA, GPIOB */
    RCC_APB2ENR |= 1u << 4;   /* USART1 */
    stm32_gpio_af(GPIOA, 9u, 7u);  /* USART1 TX */
    stm32_gpio_af(GPIOB, 7u, 7u);  /* USART1 RX */
    stm32_usart_init(&stm32_console, PCLK2_HZ, BAUD);
    dwt_init();
    timebase_init(SYSCLK_HZ);
}
