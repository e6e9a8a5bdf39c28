/* libFuzzer harness for the CLI's HTTP response parser (vg_http_parse_response):
 * a hostile or broken server must not crash the client. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "cli/http.h"
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vg_http_response r;
    char err[256];
    int head = size > 0 && (data[0] & 1);
    if (vg_http_parse_response((const char *)data, size, head, &r, err, sizeof err) == 0) {
        if (r.body[r.body_len] != '\0') __builtin_trap();
        if (r.body_len > size) __builtin_trap();
        vg_http_response_free(&r);
    }
    return 0;
}
