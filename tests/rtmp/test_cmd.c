#include "util.h"
Test(cmd, placeholder_builds) { cr_assert(1); }
