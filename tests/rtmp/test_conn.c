#include "util.h"
Test(conn, placeholder_builds) { cr_assert(1); }
