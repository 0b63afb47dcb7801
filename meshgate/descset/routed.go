package descset

import (
	"strings"

	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"
)

// Routed returns the subset of s that routes serve: every service keeps
// only its routed methods ("/pkg.Svc/M"; "/pkg.Svc/*" keeps them all) and
// services without a routed method are dropped. Messages, enums and
// extensions are kept. Reflection serves this subset so that it never
// describes a method the listener would answer UNIMPLEMENTED.
func (s *Set) Routed(methods []string) *Set {
	if s == nil {
		return nil
	}
	all := map[string]bool{}             // service → wildcard
	some := map[string]map[string]bool{} // service → methods
	for _, m := range methods {
		svc, name, ok := strings.Cut(strings.TrimPrefix(m, "/"), "/")
		if !ok {
			continue
		}
		if name == "*" {
			all[svc] = true
			continue
		}
		if some[svc] == nil {
			some[svc] = map[string]bool{}
		}
		some[svc][name] = true
	}
	files := &protoregistry.Files{}
	ok := true
	s.Files.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if fd.Services().Len() == 0 {
			ok = files.RegisterFile(fd) == nil
			return ok
		}
		fdp := protodesc.ToFileDescriptorProto(fd)
		svcs := fdp.Service[:0]
		for _, sp := range fdp.Service {
			full := string(fd.Package()) + "." + sp.GetName()
			if fd.Package() == "" {
				full = sp.GetName()
			}
			if all[full] {
				svcs = append(svcs, sp)
				continue
			}
			keep := sp.Method[:0]
			for _, mp := range sp.Method {
				if some[full][mp.GetName()] {
					keep = append(keep, mp)
				}
			}
			if len(keep) > 0 {
				sp.Method = keep
				svcs = append(svcs, sp)
			}
		}
		fdp.Service = svcs
		nfd, err := protodesc.NewFile(fdp, s.Files)
		if err == nil {
			err = files.RegisterFile(nfd)
		}
		ok = err == nil
		return ok
	})
	if !ok {
		return s // cannot happen for a linked set; serve it whole rather than nothing
	}
	return &Set{Files: files, Types: dynamicpb.NewTypes(files)}
}
