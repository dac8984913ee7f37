/* stm32_periph.c: the peripherals the STM32F4, F7 and H7 share: GPIO alternate functions
 * (RM0402 7.4, RM0385 6.4, RM0433 11.4) and the USART (RM0402 26.6, RM0385 31.8, RM0433 48.7),
 * polled, 8N1, oversampling by 16, in either register map (stm32_periph.h); port_getc and
 * port_write on the port's console USART. The status bits are
 * the same in both: RXNE 5, TXE 7, ORE 3; so are TE 3 and RE 2 in CR1. */
#include <stdint.h>

#include "port.h"
#include "stm32_periph.h"
#include "timebase.h"

#define REG(base, off) (*(volatile uint32_t *)((base) + (off)))

void stm32_gpio_af(uint32_t gpio, uint32_t pin, uint32_t af)
{
    const uint32_t afr = pin < 8u ? 0x20u : 0x24u, shift = 4u * (pin % 8u);
    REG(gpio, 0x00u) = (REG(gpio, 0x00u) & ~(3u << (2u * pin))) | (2u << (2u * pin)); /* MODER: AF */
    REG(gpio, afr) = (REG(gpio, afr) & ~(15u << shift)) | (af << shift);              /* AFRL/AFRH */
}

void stm32_usart_init(const stm32_usart_t *u, uint32_t kernel_hz, uint32_t baud)
{
    REG(u->base, u->brr) = (kernel_hz + baud / 2u) / baud;
    REG(u->base, u->cr1) = (1u << 3) | (1u << 2) | (1u << u->ue_bit); /* TE, RE, UE */
}

int stm32_usart_getc(const stm32_usart_t *u, uint32_t timeout_ms)
{
    uint32_t start = timebase_millis();
    while (!(REG(u->base, u->status) & (1u << 5))) { /* RXNE */
        if (u->icr && (REG(u->base, u->status) & (1u << 3))) { /* ORE: drop it, the frame's CRC will fail */
            REG(u->base, u->icr) = 1u << 3;
        }
        if (timeout_ms && timebase_millis() - start >= timeout_ms) {
            return -1;
        }
    }
    return (int)(REG(u->base, u->rdr) & 0xFFu);
}

void stm32_usart_write(const stm32_usart_t *u, const uint8_t *data, uint32_t n)
{
    while (n--) {
        while (!(REG(u->base, u->status) & (1u << 7))) { /* TXE */
        }
        REG(u->base, u->tdr) = *data++;
    }
}

int port_getc(uint32_t timeout_ms)
{
    return stm32_usart_getc(&stm32_console, timeout_ms);
}

void port_write(const uint8_t *data, uint32_t n)
{
    stm32_usart_write(&stm32_console, data, n);
}
