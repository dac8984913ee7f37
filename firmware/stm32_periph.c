/* stm32_periph.c: the peripherals the STM32F7 and H7 share: GPIO alternate functions
 * (RM0385 6.4, RM0433 11.4) and the USART (RM0385 31.8, RM0433 48.7), polled, 8N1,
 * oversampling by 16. */
#include <stdint.h>

#include "stm32_periph.h"
#include "timebase.h"

#define REG(base, off) (*(volatile uint32_t *)((base) + (off)))
#define CR1 0x00u
#define BRR 0x0Cu
#define ISR 0x1Cu
#define ICR 0x20u
#define RDR 0x24u
#define TDR 0x28u

void stm32_gpio_af(uint32_t gpio, uint32_t pin, uint32_t af)
{
    const uint32_t afr = pin < 8u ? 0x20u : 0x24u, shift = 4u * (pin % 8u);
    REG(gpio, 0x00u) = (REG(gpio, 0x00u) & ~(3u << (2u * pin))) | (2u << (2u * pin)); /* MODER: AF */
    REG(gpio, afr) = (REG(gpio, afr) & ~(15u << shift)) | (af << shift);              /* AFRL/AFRH */
}

void stm32_usart_init(uint32_t base, uint32_t kernel_hz, uint32_t baud)
{
    REG(base, BRR) = (kernel_hz + baud / 2u) / baud;
    REG(base, CR1) = (1u << 3) | (1u << 2) | 1u; /* TE, RE, UE */
}

int stm32_usart_getc(uint32_t base, uint32_t timeout_ms)
{
    uint32_t start = timebase_millis();
    while (!(REG(base, ISR) & (1u << 5))) { /* RXNE */
        if (REG(base, ISR) & (1u << 3)) {   /* ORE: drop the overrun, the frame's CRC will fail */
            REG(base, ICR) = 1u << 3;
        }
        if (timeout_ms && timebase_millis() - start >= timeout_ms) {
            return -1;
        }
    }
    return (int)(REG(base, RDR) & 0xFFu);
}

void stm32_usart_write(uint32_t base, const uint8_t *data, uint32_t n)
{
    while (n--) {
        while (!(REG(base, ISR) & (1u << 7))) { /* TXE */
        }
        REG(base, TDR) = *data++;
    }
}
