/* fuzz_amf0.c - AMF0 decoder (with the 0x11 switch to AMF3), prefix and
 * round-trip properties; see fuzz_amf.h. */
#include "fuzz_amf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fz_amf_run(AMF_ENC_AMF0, data, size);
}
