/* libFuzzer harness for the API's request-body decoding (vg_body_parse):
 * any bytes a client sends must give a clear refusal or an object holding
 * only allowed members — never a crash or a leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/body.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const allowed[] = {"id", "roles", "password", "kind", "patient",
                                          "reason", "scopes", "patients", NULL};
    json_t *body = NULL;
    char title[64];
    enum vg_body_rc rc = vg_body_parse((const char *)data, size, 65536, allowed, &body, title,
                                       sizeof title);
    if (rc == VG_BODY_OK) {
        if (!json_is_object(body))
            abort();
        const char *k;
        json_t *v;
        json_object_foreach(body, k, v)
        {
            int known = 0;
            for (const char *const *a = allowed; *a; a++)
                known |= !strcmp(*a, k);
            if (!known)
                abort();
        }
        json_decref(body);
    } else if (body || !title[0]) {
        abort();
    }
    return 0;
}
