package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Info is what a binary knows of its build. A field the build did not
// record is "unknown".
type Info struct {
	// Version is the main module's version: a tag such as v1.2.3 for a
	// binary built with "go install module@version", a pseudo-version or
	// "(devel)" for one built from a checkout.
	Version string
	// Revision is the VCS commit the binary was built from; Modified is
	// set when the work tree had changes. Recorded by "go build" in a
	// checkout unless -buildvcs=false.
	Revision string
	Modified bool
	// Time is the revision's commit time (RFC 3339).
	Time string
	// GoVersion is the Go toolchain that built the binary.
	GoVersion string
	// Platform is GOOS/GOARCH.
	Platform string
}

// Unknown is what a field holds when the build did not record it.
const Unknown = "unknown"

// Read returns the running binary's Info.
func Read() Info {
	info := Info{Version: Unknown, Revision: Unknown, Time: Unknown, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
	if bi.Main.Version != "" {
		info.Version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		info.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.time":
			info.Time = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// String is one line: "gridmesh VERSION (revision REV[, modified], TIME) GOVERSION PLATFORM".
func (i Info) String() string {
	mod := ""
	if i.Modified {
		mod = ", modified"
	}
	return fmt.Sprintf("gridmesh %s (revision %s%s, %s) %s %s", i.Version, i.Revision, mod, i.Time, i.GoVersion, i.Platform)
}
