package grid

import (
	"slices"

	"github.com/gridmesh/gridmesh/grid/gridotel"
	"github.com/gridmesh/gridmesh/mux"
)

// chainInterceptors puts in o.Mux the interceptors every session runs, in
// order: the grid's tracing (TracerProvider), then Options' own lists,
// then those Mux had.
func (o *Options) chainInterceptors() {
	var c []mux.ClientInterceptor
	var s []mux.ServerInterceptor
	var cs []mux.ClientStreamInterceptor
	var ss []mux.ServerStreamInterceptor
	if o.TracerProvider != nil {
		t := gridotel.New(o.TracerProvider, nil)
		c, s, cs, ss = append(c, t.Client), append(s, t.Server), append(cs, t.ClientStream), append(ss, t.ServerStream)
	}
	o.Mux.ClientInterceptors = slices.Concat(c, o.ClientInterceptors, o.Mux.ClientInterceptors)
	o.Mux.ServerInterceptors = slices.Concat(s, o.ServerInterceptors, o.Mux.ServerInterceptors)
	o.Mux.ClientStreamInterceptors = slices.Concat(cs, o.ClientStreamInterceptors, o.Mux.ClientStreamInterceptors)
	o.Mux.ServerStreamInterceptors = slices.Concat(ss, o.ServerStreamInterceptors, o.Mux.ServerStreamInterceptors)
}
