//go:build !linux

package grid

func setUnsentLimit(uintptr, int) {}
