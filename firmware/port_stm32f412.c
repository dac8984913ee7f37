/* port_stm32f412.c: NUCLEO-F412ZG. References: RM0402 (STM32F412 reference manual), UM1974
 * (Nucleo-144). 100 MHz from the ST-LINK's 8 MHz MCO (HSE bypass); USART3 (PD8 TX, PD9 RX, AF7)
 * on the ST-LINK virtual COM port at 115200 baud; DWT CYCCNT for cycles (dwt.c); polled SysTick for
 * timeouts (timebase.c). */
#include <stdint.h>

#include "dwt.h"
#include "port.h"
#include "stm32_periph.h"
#include "stm32f4f7_rcc.h"
#include "timebase.h"

#define PWR_CR STM32_REG(0x40007000u)
#define GPIOD 0x40020C00u
#define USART3_BASE 0x40004800u

#define SYSCLK_HZ 100000000u
#define PCLK1_HZ 50000000u
#define BAUD 115200u /* BRR = 50 MHz / 115200 = 434 */

const stm32_usart_t stm32_console = STM32F4_USART(USART3_BASE);

/* RM0402 6.3.2 (PLL: VCO = HSE / M * N, SYSCLK = VCO / P), 3.4.1 (Flash: 3 wait states at
 * 90-100 MHz, 2.7-3.6 V), 5.4.1 (voltage scale 1). */
static void clock_100mhz(void)
{
    RCC_CR |= 1u << 18;        /* HSEBYP: written while HSE is still off */
    RCC_CR |= 1u << 16;        /* HSEON */
    while (!(RCC_CR & (1u << 17))) {   /* HSERDY */
    }
    RCC_APB1ENR |= 1u << 28;   /* PWREN */
    PWR_CR |= 3u << 14;        /* VOS: scale 1 */
    /* PLLM = 8, PLLN = 200, PLLP = 2 (00), PLLSRC = HSE, PLLQ = 4, PLLR = 2: 1 MHz in, 200 MHz VCO */
    RCC_PLLCFGR = 8u | (200u << 6) | (0u << 16) | (1u << 22) | (4u << 24) | (2u << 28);
    RCC_CR |= 1u << 24;        /* PLLON */
    while (!(RCC_CR & (1u << 25))) { /* PLLRDY */
    }
    FLASH_ACR = 3u | (1u << 8) | (1u << 9) | (1u << 10); /* 3 wait states, prefetch, I and D cache */
    /* AHB /1, APB1 /2 (50 MHz), APB2 /1 (100 MHz), system clock from the PLL */
    RCC_CFGR = (RCC_CFGR & ~0xFCF3u) | (4u << 10) | (0u << 13) | 2u;
    while ((RCC_CFGR & 0xCu) != 0x8u) {
    }
}

void port_init(void)
{
    clock_100mhz();
    RCC_AHB1ENR |= 1u << 3;    /* GPIOD */
    RCC_APB1ENR |= 1u << 18;   /* USART3 */
    stm32_gpio_af(GPIOD, 8u, 7u);  /* USART3 TX */
    stm32_gpio_af(GPIOD, 9u, 7u);  /* USART3 RX */
    stm32_usart_init(&stm32_console, PCLK1_HZ, BAUD);
    dwt_init();
    timebase_init(SYSCLK_HZ);
}
