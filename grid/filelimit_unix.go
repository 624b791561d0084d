//go:build unix

package grid

import "syscall"

// fileLimit returns the process's soft limit on open files, or 0 if it is
// unknown.
func fileLimit() uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0
	}
	return uint64(l.Cur)
}
