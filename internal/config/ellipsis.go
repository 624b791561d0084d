package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Hosts may be written in the ellipsis form MinIO's users know:
// http://gridmesh-{0...4}.gridmesh.default.svc:9000 stands for the five
// hosts gridmesh-0 to gridmesh-4, in order. Several ellipses multiply
// (the first varies slowest); a start written with leading zeros pads
// every number to its width ({01...10}).

// maxExpandedHosts bounds what one pattern may stand for.
const maxExpandedHosts = 4096

var ellipsisRE = regexp.MustCompile(`\{([0-9]+)\.\.\.([0-9]+)\}`)

// expandHosts expands every pattern of hosts, in order.
func expandHosts(hosts []string) ([]string, error) {
	var out []string
	for _, h := range hosts {
		hs, err := expandEllipses(h)
		if err != nil {
			return nil, err
		}
		out = append(out, hs...)
		if len(out) > maxExpandedHosts {
			return nil, fmt.Errorf("more than %d hosts", maxExpandedHosts)
		}
	}
	return out, nil
}

// expandEllipses expands the {a...b} ranges of one pattern.
func expandEllipses(pattern string) ([]string, error) {
	loc := ellipsisRE.FindStringSubmatchIndex(pattern)
	if loc == nil {
		if strings.Contains(pattern, "...") {
			return nil, fmt.Errorf("%q: an ellipsis is written {FROM...TO}, with numbers", pattern)
		}
		return []string{pattern}, nil
	}
	fromS, toS := pattern[loc[2]:loc[3]], pattern[loc[4]:loc[5]]
	from, err1 := strconv.Atoi(fromS)
	to, err2 := strconv.Atoi(toS)
	if err1 != nil || err2 != nil || from > to || to-from >= maxExpandedHosts {
		return nil, fmt.Errorf("%q: bad range {%s...%s}", pattern, fromS, toS)
	}
	width := 0
	if len(fromS) > 1 && fromS[0] == '0' {
		width = len(fromS)
	}
	rest, err := expandEllipses(pattern[loc[1]:])
	if err != nil {
		return nil, err
	}
	var out []string
	for i := from; i <= to; i++ {
		for _, r := range rest {
			out = append(out, fmt.Sprintf("%s%0*d%s", pattern[:loc[0]], width, i, r))
			if len(out) > maxExpandedHosts {
				return nil, fmt.Errorf("%q: more than %d hosts", pattern, maxExpandedHosts)
			}
		}
	}
	return out, nil
}
