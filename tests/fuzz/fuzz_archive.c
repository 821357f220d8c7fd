/* libFuzzer harness for the upload checks: any bytes as an uploaded archive
 * must be accepted or rejected cleanly (no crash, leak or hang). */
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "files-archive.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        int fd = memfd_create("fuzz", MFD_CLOEXEC);
        if (fd < 0)
                return 0;
        if (write(fd, data, size) == (ssize_t) size) {
                char err[512];
                uint64_t entries = 0;
                (void) fsarchive_check(fd, (uint64_t) 1 << 24, &entries, err, sizeof(err));
        }
        (void) close(fd);
        return 0;
}
