package deploy_test

import "syscall"

// chrootAs runs a process in root as uid:gid, as a container runtime
// would run the image's USER.
func chrootAs(root string, uid, gid uint32) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Chroot:     root,
		Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{gid}},
		Setpgid:    true,
	}
}
