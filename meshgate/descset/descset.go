// Package descset loads protobuf descriptor sets named in the config
// (listeners[].reflection.descriptor_sets: FileDescriptorSet files as
// written by protoc --descriptor_set_out --include_imports or buf build) and
// serves them on grpc-go's reflection service, so that grpcurl, ghz and
// other reflection clients see the services a grpc listener routes without
// -proto flags. The same sets resolve message types for body transcoding
// (package transcode).
package descset

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// ErrLoad wraps every failure to read or link a descriptor set.
var ErrLoad = errors.New("descset: load")

// Set is a linked collection of file descriptors. It is immutable.
type Set struct {
	Files *protoregistry.Files
	Types *dynamicpb.Types
}

// Load reads and links the FileDescriptorSet files at paths (in order; a
// file already defined by an earlier set is skipped). A path ending in
// .proto is compiled at load time (github.com/bufbuild/protocompile), its
// imports resolved from its own directory and the standard
// google/protobuf imports.
// Imports not found in the sets are resolved from the descriptors linked
// into the binary (google/protobuf/*.proto and the like).
func Load(paths ...string) (*Set, error) {
	all := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	for _, p := range paths {
		fds, err := readSet(p)
		if err != nil {
			return nil, err
		}
		for _, f := range fds.File {
			if seen[f.GetName()] {
				continue
			}
			seen[f.GetName()] = true
			all.File = append(all.File, f)
		}
	}
	return FromFileDescriptorSet(all)
}

// readSet reads one FileDescriptorSet file, or compiles a .proto file.
func readSet(p string) (*descriptorpb.FileDescriptorSet, error) {
	if strings.HasSuffix(p, ".proto") {
		return compileProto(p)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLoad, err)
	}
	var fds descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(b, &fds); err != nil {
		return nil, fmt.Errorf("%w: %s: not a FileDescriptorSet: %w", ErrLoad, p, err)
	}
	return &fds, nil
}

// FromFileDescriptorSet links fds.
func FromFileDescriptorSet(fds *descriptorpb.FileDescriptorSet) (*Set, error) {
	files := &protoregistry.Files{}
	// Link in dependency order, falling back to the global registry for
	// well-known imports the set did not include.
	byName := map[string]*descriptorpb.FileDescriptorProto{}
	for _, f := range fds.File {
		byName[f.GetName()] = f
	}
	var link func(name string, stack map[string]bool) error
	link = func(name string, stack map[string]bool) error {
		if _, err := files.FindFileByPath(name); err == nil {
			return nil
		}
		fp := byName[name]
		if fp == nil {
			if gf, err := protoregistry.GlobalFiles.FindFileByPath(name); err == nil {
				return files.RegisterFile(gf)
			}
			return fmt.Errorf("%w: import %q is not in the descriptor sets (build them with --include_imports)", ErrLoad, name)
		}
		if stack[name] {
			return fmt.Errorf("%w: import cycle at %q", ErrLoad, name)
		}
		stack[name] = true
		for _, dep := range fp.GetDependency() {
			if err := link(dep, stack); err != nil {
				return err
			}
		}
		delete(stack, name)
		fd, err := protodesc.NewFile(fp, files)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrLoad, name, err)
		}
		return files.RegisterFile(fd)
	}
	for _, f := range fds.File {
		if err := link(f.GetName(), map[string]bool{}); err != nil {
			return nil, err
		}
	}
	return &Set{Files: files, Types: dynamicpb.NewTypes(files)}, nil
}

// Service returns the named service, if the set describes it.
func (s *Set) Service(name string) (protoreflect.ServiceDescriptor, bool) {
	if s == nil {
		return nil, false
	}
	d, err := s.Files.FindDescriptorByName(protoreflect.FullName(name))
	if err != nil {
		return nil, false
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	return sd, ok
}

// Message returns the named message type, if the set describes it.
func (s *Set) Message(name string) (protoreflect.MessageDescriptor, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: no descriptor sets", ErrLoad)
	}
	d, err := s.Files.FindDescriptorByName(protoreflect.FullName(name))
	if err != nil {
		return nil, fmt.Errorf("%w: message %q not in the descriptor sets", ErrLoad, name)
	}
	md, ok := d.(protoreflect.MessageDescriptor)
	if !ok {
		return nil, fmt.Errorf("%w: %q is not a message", ErrLoad, name)
	}
	return md, nil
}
