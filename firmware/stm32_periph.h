/* stm32_periph.h: GPIO alternate functions and the polled USART of the STM32F4/F7/H7; `gpio` is
 * the GPIO port's address. The USART comes in two register maps (F4's and F7/H7's). */
#ifndef QE_STM32_PERIPH_H
#define QE_STM32_PERIPH_H

#include <stdint.h>

typedef struct {
    uint32_t base;    /* peripheral address */
    uint8_t status;   /* status register offset (SR on F4, ISR on F7/H7) */
    uint8_t rdr;      /* receive data */
    uint8_t tdr;      /* transmit data */
    uint8_t brr;      /* baud rate */
    uint8_t cr1;      /* control 1 */
    uint8_t icr;      /* interrupt clear (0: none; F4 clears an overrun by reading the data) */
    uint8_t ue_bit;   /* USART enable bit in CR1 (13 on F4, 0 on F7/H7) */
} stm32_usart_t;

#define STM32F4_USART(addr) {(addr), 0x00u, 0x04u, 0x04u, 0x08u, 0x0Cu, 0x00u, 13u}
#define STM32F7_USART(addr) {(addr), 0x1Cu, 0x24u, 0x28u, 0x0Cu, 0x00u, 0x20u, 0u}

/* The USART on the ST-LINK's virtual COM port: each STM32 port defines it; port_getc and
 * port_write (port.h) read and write it. */
extern const stm32_usart_t stm32_console;

void stm32_gpio_af(uint32_t gpio, uint32_t pin, uint32_t af); /* pin 0..15 to alternate function af */
void stm32_usart_init(const stm32_usart_t *u, uint32_t kernel_hz, uint32_t baud);
int stm32_usart_getc(const stm32_usart_t *u, uint32_t timeout_ms); /* -1 after timeout_ms (0: wait) */
void stm32_usart_write(const stm32_usart_t *u, const uint8_t *data, uint32_t n);

#endif /* QE_STM32_PERIPH_H */
