//go:build !unix

package gateway

import "os/exec"

func setProcessGroup(*exec.Cmd) {}

func killGroup(*exec.Cmd) {}
