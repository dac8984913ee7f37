/* Host runner (tests, bit-exact checks): runs a generated model on the build machine.
 *
 * usage: runner N [arena] < images > results
 * Reads N packed inputs of QE_APP_INPUT_BYTES each from stdin. For each, writes to stdout every
 * layer's output buffer right after the layer ran (qe_app_layer_info[i].out_bytes bytes each, in
 * layer order), then QE_APP_NUM_CLASSES int8 logits, the class (u16 LE) and, with `arena`,
 * the whole arena (QE_APP_ARENA_BYTES) as the inference left it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host_hooks.h"
#include "qe_app.h"

void qe_host_layer_end(int index)
{
    const qe_app_layer_info_t *info = &qe_app_layer_info[index];
    if (info->out_bytes &&
        fwrite(qe_app_arena() + info->out_off, 1, info->out_bytes, stdout) != info->out_bytes) {
        exit(3);
    }
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 1;
    int arena = argc > 2 && strcmp(argv[2], "arena") == 0;
    long i;
    for (i = 0; i < n; i++) {
        static int8_t logits[QE_APP_NUM_CLASSES];
        unsigned char label[2];
        int c;
        if (fread(qe_app_input(), 1, QE_APP_INPUT_BYTES, stdin) != QE_APP_INPUT_BYTES) {
            fprintf(stderr, "runner: short input for image %ld\n", i);
            return 2;
        }
        c = qe_app_run(logits);
        label[0] = (unsigned char)c;
        label[1] = (unsigned char)(c >> 8);
        if (fwrite(logits, 1, QE_APP_NUM_CLASSES, stdout) != QE_APP_NUM_CLASSES ||
            fwrite(label, 1, 2, stdout) != 2) {
            return 3;
        }
        if (arena && fwrite(qe_app_arena(), 1, QE_APP_ARENA_BYTES, stdout) != QE_APP_ARENA_BYTES) {
            return 3;
        }
    }
    return 0;
}
