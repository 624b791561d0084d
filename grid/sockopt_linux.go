package grid

import "golang.org/x/sys/unix"

func setUnsentLimit(fd uintptr, limit int) {
	unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, limit)
}
