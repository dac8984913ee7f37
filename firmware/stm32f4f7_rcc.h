/* stm32f4f7_rcc.h: the reset and clock control and Flash interface registers that the STM32F4
 * and F7 keep at the same addresses (RM0402 6.3 and 3.8, RM0385 5.3 and 3.7). */
#ifndef QE_STM32F4F7_RCC_H
#define QE_STM32F4F7_RCC_H

#include <stdint.h>

#define STM32_REG(addr) (*(volatile uint32_t *)(addr))
#define RCC 0x40023800u
#define RCC_CR STM32_REG(RCC + 0x00u)
#define RCC_PLLCFGR STM32_REG(RCC + 0x04u)
#define RCC_CFGR STM32_REG(RCC + 0x08u)
#define RCC_AHB1ENR STM32_REG(RCC + 0x30u)
#define RCC_APB1ENR STM32_REG(RCC + 0x40u)
#define RCC_APB2ENR STM32_REG(RCC + 0x44u)
#define FLASH_ACR STM32_REG(0x40023C00u)

#endif /* QE_STM32F4F7_RCC_H */
