package descset

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// compileProto compiles the .proto file at path (imports resolved from its
// directory and the standard google/protobuf imports) with
// github.com/bufbuild/protocompile and returns it and its imports as a
// FileDescriptorSet.
func compileProto(path string) (*descriptorpb.FileDescriptorSet, error) {
	c := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{ImportPaths: []string{filepath.Dir(path)}}),
	}
	files, err := c.Compile(context.Background(), filepath.Base(path))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrLoad, path, err)
	}
	out := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imps := fd.Imports()
		for i := range imps.Len() {
			add(imps.Get(i).FileDescriptor)
		}
		out.File = append(out.File, protodesc.ToFileDescriptorProto(fd))
	}
	for _, f := range files {
		add(f)
	}
	return out, nil
}
