package descset_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/meshgate/meshgate/meshgate/descset"
	"github.com/meshgate/meshgate/meshgate/descset/descsettest"
)

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := descsettest.Write(t, dir)
	s, err := descset.Load(p, p) // a file repeated across sets is skipped
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Service("legacy.Legacy"); !ok {
		t.Fatal("legacy.Legacy not found")
	}
	if _, ok := s.Service("legacy.EchoRequest"); ok {
		t.Fatal("a message is not a service")
	}
	if md, err := s.Message("legacy.EchoRequest"); err != nil || md.Fields().Len() != 4 {
		t.Fatalf("message: %v %v", md, err)
	}
	if _, err := s.Message("legacy.Legacy"); err == nil {
		t.Fatal("a service is not a message")
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk")
	_ = os.WriteFile(junk, []byte{0xff, 0xff, 0xff}, 0o600)
	for name, p := range map[string]string{"missing": filepath.Join(dir, "nope"), "junk": junk} {
		if _, err := descset.Load(p); !errors.Is(err, descset.ErrLoad) {
			t.Errorf("%s: %v", name, err)
		}
	}
	fds := descsettest.FileDescriptorSet()
	fds.File[0].Dependency = []string{"not/included.proto"}
	if _, err := descset.FromFileDescriptorSet(fds); !errors.Is(err, descset.ErrLoad) {
		t.Errorf("missing import: %v", err)
	}
	// A well-known import not in the set comes from the binary.
	fds = descsettest.FileDescriptorSet()
	fds.File[0].Dependency = []string{"google/protobuf/timestamp.proto"}
	fds.File[0].MessageType[2].Field = append(fds.File[0].MessageType[2].Field, &descriptorpb.FieldDescriptorProto{
		Name: new("at"), Number: new(int32(3)), Type: descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum(),
		Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), TypeName: new(".google.protobuf.Timestamp")})
	if _, err := descset.FromFileDescriptorSet(fds); err != nil {
		t.Errorf("well-known import: %v", err)
	}
}

// TestLoadProtoSource: a .proto path is compiled at load time, with local
// and standard imports.
func TestLoadProtoSource(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("common.proto", `syntax = "proto3"; package shop; message Money { int64 cents = 1; }`)
	p := write("shop.proto", `syntax = "proto3";
package shop;
import "common.proto";
import "google/protobuf/timestamp.proto";
message BuyRequest { string item = 1; Money price = 2; google.protobuf.Timestamp at = 3; }
message BuyReply { bool ok = 1; }
service Shop { rpc Buy(BuyRequest) returns (BuyReply); }
`)
	s, err := descset.Load(p, descsettest.Write(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	if sd, ok := s.Service("shop.Shop"); !ok || sd.Methods().ByName("Buy") == nil {
		t.Fatal("shop.Shop not compiled")
	}
	if md, err := s.Message("shop.BuyRequest"); err != nil || md.Fields().ByName("price").Message().FullName() != "shop.Money" {
		t.Fatalf("BuyRequest: %v", err)
	}
	if _, ok := s.Service("legacy.Legacy"); !ok {
		t.Fatal("the protoset beside the .proto was lost")
	}
	bad := write("bad.proto", "syntax = \"proto3\";\nmessage X { strng y = 1; }\n")
	if _, err := descset.Load(bad); !errors.Is(err, descset.ErrLoad) || !strings.Contains(err.Error(), "bad.proto:2") {
		t.Fatalf("bad .proto: %v", err)
	}
}
