/* stm32_usart.h: polled USART of the STM32F7/H7; `base` is the peripheral's address. */
#ifndef QE_STM32_USART_H
#define QE_STM32_USART_H

#include <stdint.h>

void stm32_usart_init(uint32_t base, uint32_t kernel_hz, uint32_t baud);
int stm32_usart_getc(uint32_t base, uint32_t timeout_ms); /* -1 after timeout_ms (0: wait) */
void stm32_usart_write(uint32_t base, const uint8_t *data, uint32_t n);

#endif /* QE_STM32_USART_H */
