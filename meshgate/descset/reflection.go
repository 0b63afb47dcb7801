package descset

import (
	"strings"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
	v1reflectiongrpc "google.golang.org/grpc/reflection/grpc_reflection_v1"
	v1alphareflectiongrpc "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// Reflector is the reflection service of one grpc listener. It lists the
// services registered on the grpc.Server (health, reflection) plus every
// routed service the descriptor sets describe, with only its routed
// methods; a routed service without a descriptor is not listed (reflection
// cannot describe it), nor is a described service no route serves:
// reflection says nothing false. Update swaps what it serves (config
// reload).
type Reflector struct {
	base reflection.ServiceInfoProvider
	st   atomic.Pointer[reflState]
}

type reflState struct {
	set      *Set
	services map[string]grpc.ServiceInfo
}

// NewReflector registers the reflection service (v1 and v1alpha) on gs,
// resolving descriptors from the sets given to Update and from the
// descriptors linked into the binary.
func NewReflector(gs *grpc.Server) *Reflector {
	r := &Reflector{base: gs}
	r.st.Store(&reflState{})
	opts := reflection.ServerOptions{Services: r, DescriptorResolver: resolver{r}, ExtensionResolver: extResolver{r}}
	v1reflectiongrpc.RegisterServerReflectionServer(gs, reflection.NewServerV1(opts))
	v1alphareflectiongrpc.RegisterServerReflectionServer(gs, reflection.NewServer(opts))
	return r
}

// Update serves set (may be nil) for the routed methods (full method names
// "/pkg.Svc/M" or "/pkg.Svc/*"): only routed services and methods are
// listed and described (Set.Routed).
func (r *Reflector) Update(set *Set, methods []string) {
	set = set.Routed(methods)
	st := &reflState{set: set, services: map[string]grpc.ServiceInfo{}}
	for _, m := range methods {
		svc, _, ok := strings.Cut(strings.TrimPrefix(m, "/"), "/")
		if !ok {
			continue
		}
		sd, ok := set.Service(svc)
		if !ok {
			continue
		}
		if _, done := st.services[svc]; done {
			continue
		}
		info := grpc.ServiceInfo{}
		ms := sd.Methods()
		for i := range ms.Len() {
			md := ms.Get(i)
			info.Methods = append(info.Methods, grpc.MethodInfo{Name: string(md.Name()), IsClientStream: md.IsStreamingClient(), IsServerStream: md.IsStreamingServer()})
		}
		info.Metadata = sd.ParentFile().Path()
		st.services[svc] = info
	}
	r.st.Store(st)
}

// GetServiceInfo implements reflection.ServiceInfoProvider.
func (r *Reflector) GetServiceInfo() map[string]grpc.ServiceInfo {
	st := r.st.Load()
	out := r.base.GetServiceInfo()
	for k, v := range st.services {
		out[k] = v
	}
	return out
}

// resolver looks up the sets first, then the binary's own descriptors.
type resolver struct{ r *Reflector }

func (x resolver) FindFileByPath(p string) (protoreflect.FileDescriptor, error) {
	if s := x.r.st.Load().set; s != nil {
		if fd, err := s.Files.FindFileByPath(p); err == nil {
			return fd, nil
		}
	}
	return protoregistry.GlobalFiles.FindFileByPath(p)
}

func (x resolver) FindDescriptorByName(n protoreflect.FullName) (protoreflect.Descriptor, error) {
	if s := x.r.st.Load().set; s != nil {
		if d, err := s.Files.FindDescriptorByName(n); err == nil {
			return d, nil
		}
	}
	return protoregistry.GlobalFiles.FindDescriptorByName(n)
}

type extResolver struct{ r *Reflector }

func (x extResolver) FindExtensionByName(n protoreflect.FullName) (protoreflect.ExtensionType, error) {
	if s := x.r.st.Load().set; s != nil {
		if t, err := s.Types.FindExtensionByName(n); err == nil {
			return t, nil
		}
	}
	return protoregistry.GlobalTypes.FindExtensionByName(n)
}

func (x extResolver) FindExtensionByNumber(m protoreflect.FullName, f protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	if s := x.r.st.Load().set; s != nil {
		if t, err := s.Types.FindExtensionByNumber(m, f); err == nil {
			return t, nil
		}
	}
	return protoregistry.GlobalTypes.FindExtensionByNumber(m, f)
}

func (x extResolver) RangeExtensionsByMessage(m protoreflect.FullName, f func(protoreflect.ExtensionType) bool) {
	if s := x.r.st.Load().set; s != nil {
		stop := false
		s.Files.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
			xs := fd.Extensions()
			for i := range xs.Len() {
				xd := xs.Get(i)
				if xd.ContainingMessage().FullName() != m {
					continue
				}
				if t, err := s.Types.FindExtensionByName(xd.FullName()); err == nil && !f(t) {
					stop = true
					return false
				}
			}
			return true
		})
		if stop {
			return
		}
	}
	protoregistry.GlobalTypes.RangeExtensionsByMessage(m, f)
}
