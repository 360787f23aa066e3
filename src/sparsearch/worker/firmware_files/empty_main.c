/*
 * The empty image: startup code and semihosting, no model. What the model costs is the model
 * image's size minus this one's (both print a line with a number, so the formatter is in both).
 */
#include "semihost.h"

int main(void)
{
    sh_write("empty image: ");
    sh_write_int(0);
    sh_put_line("");
    return 0;
}
