// Package descsettest builds descriptor sets in Go (descriptorpb, no protoc)
// for tests: the legacy.Legacy service of the reference legacy server, with
// messages to transcode, and an unrouted service.
package descsettest

import (
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
)

// FileDescriptorSet describes legacy.proto:
//
//	syntax = "proto3";
//	package legacy;
//	message EchoRequest  { string text = 1; int64 count = 2; repeated string tags = 3; Inner inner = 4; }
//	message Inner        { bool flag = 1; }
//	message EchoResponse { string text = 1; int64 count = 2; }
//	service Legacy { rpc Echo(EchoRequest) returns (EchoResponse); rpc Uppercase(EchoRequest) returns (EchoResponse); }
//	service Unrouted { rpc Nope(EchoRequest) returns (EchoResponse); }
func FileDescriptorSet() *descriptorpb.FileDescriptorSet {
	s := proto.String
	field := func(name string, num int32, t descriptorpb.FieldDescriptorProto_Type, label descriptorpb.FieldDescriptorProto_Label, typeName string) *descriptorpb.FieldDescriptorProto {
		f := &descriptorpb.FieldDescriptorProto{Name: s(name), Number: proto.Int32(num), Type: t.Enum(), Label: label.Enum(), JsonName: s(name)}
		if typeName != "" {
			f.TypeName = s(typeName)
		}
		return f
	}
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
	rep := descriptorpb.FieldDescriptorProto_LABEL_REPEATED
	str := descriptorpb.FieldDescriptorProto_TYPE_STRING
	i64 := descriptorpb.FieldDescriptorProto_TYPE_INT64
	method := func(name string) *descriptorpb.MethodDescriptorProto {
		return &descriptorpb.MethodDescriptorProto{Name: s(name), InputType: s(".legacy.EchoRequest"), OutputType: s(".legacy.EchoResponse")}
	}
	return &descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{{
		Name:    s("legacy.proto"),
		Package: s("legacy"),
		Syntax:  s("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: s("EchoRequest"), Field: []*descriptorpb.FieldDescriptorProto{
				field("text", 1, str, opt, ""),
				field("count", 2, i64, opt, ""),
				field("tags", 3, str, rep, ""),
				field("inner", 4, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE, opt, ".legacy.Inner"),
			}},
			{Name: s("Inner"), Field: []*descriptorpb.FieldDescriptorProto{
				field("flag", 1, descriptorpb.FieldDescriptorProto_TYPE_BOOL, opt, ""),
			}},
			{Name: s("EchoResponse"), Field: []*descriptorpb.FieldDescriptorProto{
				field("text", 1, str, opt, ""),
				field("count", 2, i64, opt, ""),
			}},
		},
		Service: []*descriptorpb.ServiceDescriptorProto{
			{Name: s("Legacy"), Method: []*descriptorpb.MethodDescriptorProto{method("Echo"), method("Uppercase")}},
			{Name: s("Unrouted"), Method: []*descriptorpb.MethodDescriptorProto{method("Nope")}},
		},
	}}}
}

// Write writes the set to dir/legacy.protoset and returns the path.
func Write(t testing.TB, dir string) string {
	t.Helper()
	b, err := proto.Marshal(FileDescriptorSet())
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "legacy.protoset")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
