/* stm32_periph.h: GPIO alternate functions and the polled USART of the STM32F7/H7; `gpio` and
 * `base` are the peripherals' addresses. */
#ifndef QE_STM32_PERIPH_H
#define QE_STM32_PERIPH_H

#include <stdint.h>

void stm32_gpio_af(uint32_t gpio, uint32_t pin, uint32_t af); /* pin 0..15 to alternate function af */
void stm32_usart_init(uint32_t base, uint32_t kernel_hz, uint32_t baud);
int stm32_usart_getc(uint32_t base, uint32_t timeout_ms); /* -1 after timeout_ms (0: wait) */
void stm32_usart_write(uint32_t base, const uint8_t *data, uint32_t n);

#endif /* QE_STM32_PERIPH_H */
