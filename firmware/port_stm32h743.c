/* port_stm32h743.c: STM32H743, the paper's third budget: built and linked, not yet run on a
 * board. References: RM0433. Runs from the 64 MHz HSI of reset (no PLL set-up yet); USART3
 * (PD8 TX, PD9 RX, AF7) on the ST-LINK virtual COM port of the NUCLEO-H743ZI at 115200 baud;
 * DWT CYCCNT for cycles (dwt.c); polled SysTick for
 * timeouts (timebase.c). */
#include <stdint.h>

#include "dwt.h"
#include "port.h"
#include "stm32_periph.h"
#include "timebase.h"

#define REG(addr) (*(volatile uint32_t *)(addr))
#define RCC_AHB4ENR REG(0x580244E0u)
#define RCC_APB1LENR REG(0x580244E8u)
#define GPIOD 0x58020C00u
#define USART3_BASE 0x40004800u

#define HSI_HZ 64000000u
#define BAUD 115200u

const stm32_usart_t stm32_console = STM32F7_USART(USART3_BASE);

void port_init(void)
{
    RCC_AHB4ENR |= 1u << 3;    /* GPIOD (RM0433 8.7.43) */
    RCC_APB1LENR |= 1u << 18;  /* USART3 (8.7.45) */
    stm32_gpio_af(GPIOD, 8u, 7u);  /* USART3 TX */
    stm32_gpio_af(GPIOD, 9u, 7u);  /* USART3 RX */
    stm32_usart_init(&stm32_console, HSI_HZ, BAUD);
    dwt_init();
    timebase_init(HSI_HZ);
}
