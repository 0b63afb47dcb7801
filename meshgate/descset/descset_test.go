package descset_test

import (
	"errors"
	"os"
	"path/filepath"
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
