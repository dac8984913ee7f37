/* dwt.h: the DWT cycle counter behind port.h's counter functions (board ports). */
#ifndef QE_DWT_H
#define QE_DWT_H

void dwt_init(void);

#endif /* QE_DWT_H */
