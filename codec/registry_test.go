package codec_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
)

func TestRegistry(t *testing.T) {
	c, err := codec.New("mgp", 0)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name() != mgp.Name || c.MaxFrameSize() != codec.DefaultMaxFrameSize {
		t.Fatalf("%s max %d", c.Name(), c.MaxFrameSize())
	}
	c, err = codec.New("mgp", 1234)
	if err != nil || c.MaxFrameSize() != 1234 {
		t.Fatalf("max: %v %v", c, err)
	}
	_, err = codec.New("nope", 0)
	if !errors.Is(err, codec.ErrUnknownCodec) || !strings.Contains(err.Error(), `"nope"`) || !strings.Contains(err.Error(), "mgp") {
		t.Fatalf("unknown codec: %v", err)
	}
	found := false
	for _, n := range codec.Names() {
		found = found || n == "mgp"
	}
	if !found {
		t.Fatalf("Names() = %v", codec.Names())
	}
}

func TestRegisterDuplicatePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("duplicate Register did not panic")
		}
	}()
	codec.Register("mgp", func(int) (codec.Codec, error) { return mgp.New(0), nil })
}

func TestTryRegister(t *testing.T) {
	if err := codec.TryRegister("mgp", nil); !errors.Is(err, codec.ErrDuplicateCodec) {
		t.Fatalf("duplicate: %v", err)
	}
	f := func(max int) (codec.Codec, error) { return mgp.New(max), nil }
	if err := codec.TryRegister("test-try-register", f); err != nil {
		t.Fatal(err)
	}
	if c, err := codec.New("test-try-register", 99); err != nil || c.MaxFrameSize() != 99 {
		t.Fatalf("%v %v", c, err)
	}
}
