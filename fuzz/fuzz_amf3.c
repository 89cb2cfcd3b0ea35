/* fuzz_amf3.c - AMF3 decoder, prefix and round-trip properties; see
 * fuzz_amf.h. */
#include "fuzz_amf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fz_amf_run(AMF_ENC_AMF3, data, size);
}
